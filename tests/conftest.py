"""Shared pytest setup: float64 for the whole session, one compilation cache for the tests, and a
PRNG key fixture.

float64 is enabled at import, before any test module builds an array, so that the NumPy
references of the core tests can be compared at rtol ~1e-10. Tests that want float32 (the dtype
users train in) ask for it explicitly, through ``dtype=`` arguments or ``jax.enable_x64(False)``.

Many tests compile the same programs (the training step of the tiny configs, in-process and in
the ``train.py`` / ``eval.py`` subprocesses they start, on each pytest-xdist worker), and a
second run of the suite compiles what the first one did (about a third of a first run's time).
JAX's persistent compilation cache lets them compile once: it lives in pytest's cache directory
(``.pytest_cache/d/jax-compilation-cache``, at most ``_CACHE_MAX_BYTES``, the least recently used
entries evicted; ``pytest --cache-clear`` empties it), or, where pytest's cache is disabled
(``-p no:cacheprovider``), in a fresh directory that the main process removes at the end. A
cached executable is the one the compiler made for the same program, jax version and flags, so
results do not change.
"""

import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)

_CACHE_ENV = "NPRNN_TESTS_JAX_CACHE"  # set by the main process, inherited by xdist's workers
_CACHE_MAX_BYTES = 512 * 2**20  # a whole suite's programs take 25 MB; the limit needs filelock


def pytest_configure(config):
    cache = os.environ.get(_CACHE_ENV)
    if cache is None:  # the main process
        if getattr(config, "cache", None) is not None:
            cache, temporary = str(config.cache.mkdir("jax-compilation-cache")), False
        else:
            cache, temporary = tempfile.mkdtemp(prefix="nprnn-tests-jax-cache-"), True
        os.environ[_CACHE_ENV] = cache
        config.stash[_SET] = (cache, temporary)
    settings = {  # the tests' processes, and the subprocesses they start (through the environment)
        "jax_compilation_cache_dir": cache,
        "jax_persistent_cache_min_compile_time_secs": 0.2,
        "jax_compilation_cache_max_size": _CACHE_MAX_BYTES,
    }
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)
        jax.config.update(name, value)


def pytest_unconfigure(config):
    cache, temporary = config.stash.get(_SET, (None, False))
    if cache is not None:  # the main process
        os.environ.pop(_CACHE_ENV, None)
        if temporary:
            shutil.rmtree(cache, ignore_errors=True)


_SET = pytest.StashKey[tuple]()  # (cache directory, whether to remove it at the end)


@pytest.fixture
def key():
    """A fresh PRNG key (new-style typed key), the same in every test."""
    return jax.random.key(0)
