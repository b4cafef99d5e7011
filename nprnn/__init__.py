"""nprnn: normalized recurrent networks in JAX; the public API, imported from cells, host,
initializers and variances.

The Normalized LSTM of "Recurrent Normalization Propagation" (Laurent, Ballas, Vincent, 2017)
and the four LSTMs it is compared with (plain, weight norm, layer norm, batch norm), as pure,
jit-able functions over plain-dict parameters.

Example:
  >>> import jax, jax.numpy as jnp, nprnn
  >>> params, consts = nprnn.init_params(
  ...     jax.random.key(0), input_size=8, hidden_size=16, variant="normprop")
  >>> state = nprnn.init_state(4, 16)
  >>> state, hs = nprnn.run_sequence(
  ...     params, consts, state, jnp.zeros((10, 4, 8)), variant="normprop")
  >>> hs.shape
  (10, 4, 16)
"""

from nprnn.cells import (
    NORM_EPSILON,
    LSTMState,
    broadcast_state,
    init_state,
    lstm_step,
    run_sequence,
)
from nprnn.host import tune_host_allocator
from nprnn.initializers import (
    COMPENSATIONS,
    DEFAULT_GAMMAS,
    VARIANTS,
    init_bn_stats,
    init_params,
    project_unit_norm,
    update_bn_stats,
)
from nprnn.variances import VARIANCE_METHODS, normprop_variances, released_constants, tanh_std

__version__ = "0.1.0"

__all__ = [
    "COMPENSATIONS",
    "DEFAULT_GAMMAS",
    "LSTMState",
    "NORM_EPSILON",
    "VARIANCE_METHODS",
    "VARIANTS",
    "broadcast_state",
    "init_bn_stats",
    "init_params",
    "init_state",
    "lstm_step",
    "normprop_variances",
    "project_unit_norm",
    "released_constants",
    "run_sequence",
    "tanh_std",
    "tune_host_allocator",
    "update_bn_stats",
]
