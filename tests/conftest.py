"""Shared pytest setup: float64 for the whole session, one compilation cache for the session, and
a PRNG key fixture.

float64 is enabled at import, before any test module builds an array, so that the NumPy
references of the core tests can be compared at rtol ~1e-10. Tests that want float32 (the dtype
users train in) ask for it explicitly, through ``dtype=`` arguments or ``jax.enable_x64(False)``.

Many tests compile the same programs (the training step of the tiny configs, in-process and in
the ``train.py`` / ``eval.py`` subprocesses they start, on each pytest-xdist worker). JAX's
persistent compilation cache, in a fresh directory per session that the main process removes at
the end, lets them compile once. A cached executable is the one the compiler made, so results do
not change; nothing outlives the session.
"""

import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)

_CACHE_ENV = "NPRNN_TESTS_JAX_CACHE"  # set by the main process, inherited by xdist's workers


def pytest_configure(config):
    cache = os.environ.get(_CACHE_ENV)
    if cache is None:  # the main process
        cache = tempfile.mkdtemp(prefix="nprnn-tests-jax-cache-")
        os.environ[_CACHE_ENV] = cache
        config.stash[_OWNED] = cache
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache  # the subprocesses the tests start
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def pytest_unconfigure(config):
    owned = config.stash.get(_OWNED, None)
    if owned is not None:
        shutil.rmtree(owned, ignore_errors=True)
        os.environ.pop(_CACHE_ENV, None)


_OWNED = pytest.StashKey[str]()


@pytest.fixture
def key():
    """A fresh PRNG key (new-style typed key), the same in every test."""
    return jax.random.key(0)
