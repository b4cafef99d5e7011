"""Shared pytest setup: float64 for the whole session and a PRNG key fixture.

float64 is enabled at import, before any test module builds an array, so that the NumPy
references of the core tests can be compared at rtol ~1e-10. Tests that want float32 (the dtype
users train in) ask for it explicitly, through ``dtype=`` arguments or ``jax.enable_x64(False)``.
"""

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    """A fresh PRNG key (new-style typed key), the same in every test."""
    return jax.random.key(0)
