"""Parameter initialization for the five LSTM variants, and the unit-norm projection; imports
nprnn._lstm, nprnn._validate and nprnn.variances.

Every variant stores its weights as ``x @ W`` matrices, gates fused along the last axis in the
paper's order i, f, o, g:

===========  =========================================================  ======================
variant      ``params``                                                 ``consts``
===========  =========================================================  ======================
lstm         ``w_x`` [D, 4H], ``w_h`` [H, 4H], ``b`` [4H]               (empty)
weightnorm   lstm's + ``gamma_x`` [4H], ``gamma_h`` [4H]                (empty)
normprop     weightnorm's + ``gamma_c`` [H]                             ``var_c``, ``var_h`` []
                                                                        (or ``s_h``, ``s_c`` [])
layernorm    weightnorm's + ``gamma_c`` [H], ``beta_c`` [H]             (empty)
batchnorm    weightnorm's + ``gamma_c`` [H], ``beta_c`` [H]             (empty)
===========  =========================================================  ======================

Batch-norm population statistics are a third pytree, made by :func:`init_bn_stats`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nprnn import _validate
from nprnn._lstm import COMPENSATIONS, VARIANTS, check_variant, column_norm, orthogonal_gates
from nprnn.variances import VARIANCE_METHODS, normprop_variances, released_constants

__all__ = [
    "VARIANTS",
    "COMPENSATIONS",
    "DEFAULT_GAMMAS",
    "init_params",
    "init_bn_stats",
    "update_bn_stats",
    "project_unit_norm",
    "check_variant",
]

# (gamma_x, gamma_h, gamma_c) at initialization. lstm has none; weightnorm has no gamma_c.
DEFAULT_GAMMAS = {
    "lstm": (None, None, None),
    # The paper does not give weight norm's gammas; 1.0 keeps the normalized projections at unit
    # scale, as plain weight normalization (Salimans & Kingma 2016) does.
    "weightnorm": (1.0, 1.0, None),
    "layernorm": (1.0, 1.0, 1.0),  # Ba et al. (2016)
    "batchnorm": (0.1, 0.1, 0.1),  # Cooijmans et al. (2016)
    "normprop": (2.0, 2.0, 1.0),  # the paper's character-level PTB setting
}


def _initial_gamma(name: str, value, default):
    """The checked initial gamma (``default`` where ``value`` is None); None if the variant has
    no such gamma."""
    if default is None:
        return None
    return _validate.positive_gamma(name, default if value is None else value)


def init_params(
    key: jax.Array,
    *,
    input_size: int,
    hidden_size: int,
    variant: str,
    gamma_x: float | None = None,
    gamma_h: float | None = None,
    gamma_c: float | None = None,
    forget_bias: float = 0.0,
    variance_method: str = "analytic",
    compensation: str = "paper",
    dtype=jnp.float32,
) -> tuple[dict, dict]:
    """Initializes one LSTM layer of the given variant.

    Args:
        key: PRNG key.
        input_size: D, the size of x_t.
        hidden_size: H, the number of units.
        variant: one of :data:`VARIANTS`.
        gamma_x: initial scale of the (normalized) input projection; ``None`` takes the variant's
            default from :data:`DEFAULT_GAMMAS` (normprop 2, layernorm 1, batchnorm 0.1,
            weightnorm 1). Ignored by ``lstm``.
        gamma_h: likewise for the recurrent projection.
        gamma_c: likewise for the cell normalization (normprop, layernorm, batchnorm).
        forget_bias: initial value of the forget-gate entries of ``b`` (the other entries are 0).
            The normprop variance constants assume a zero bias at initialization.
        variance_method: normprop only: how ``var_c`` and ``var_h`` are computed, ``"analytic"``
            (the paper's eq. 8 and 12) or ``"simulated"``; see :func:`nprnn.normprop_variances`.
        compensation: normprop only: which form of the Normalized LSTM, one of
            :data:`COMPENSATIONS`. ``"paper"``: eq. 14-15 as printed, ``consts = {var_c, var_h}``.
            ``"released"``: the authors' released code (``Thrandis/draw``),
            ``c_t = sigma(f~) c_{t-1} + sigma(i~) tanh(g~) / s_h`` and
            ``h_t = sigma(o~) tanh(gamma_c c_t) / s_c`` with ``s_h = s(gamma_h)``,
            ``s_c = s(gamma_c)`` of the initial gammas (:func:`nprnn.released_constants`),
            ``consts = {s_h, s_c}``. The step and sequence functions read the form from
            ``consts``.
        dtype: floating dtype of the parameters.

    Returns:
        ``(params, consts)``: trainable parameters and frozen constants, two plain dicts (see the
        module docstring for their keys and shapes). Only ``params`` is meant for an optimizer.

    Raises:
        ValueError: for an unknown variant or variance method, a non-positive size or gamma, or a
            non-floating dtype.

    Notes:
        ``w_x`` and ``w_h`` are initialized with an independent random orthogonal block per gate
        (semi-orthogonal for ``w_x`` when D != H). For weightnorm and normprop every unit's incoming
        weight vector (a column) is then rescaled to unit L2 norm (the paper's section 3.3). The
        gammas are stored as per-unit vectors initialized to the scalar given.

    Example:
        >>> import jax, nprnn
        >>> params, consts = nprnn.init_params(
        ...     jax.random.key(0), input_size=3, hidden_size=4, variant="normprop")
        >>> params["w_h"].shape, params["gamma_c"].shape, sorted(consts)
        ((4, 16), (4,), ['var_c', 'var_h'])
    """
    check_variant(variant)
    input_size = _validate.positive_int("input_size", input_size)
    hidden_size = _validate.positive_int("hidden_size", hidden_size)
    dtype = _validate.floating_dtype("dtype", dtype)
    _validate.one_of("variance method", variance_method, VARIANCE_METHODS)
    _validate.one_of("compensation", compensation, tuple(COMPENSATIONS))
    if compensation == "released" and variance_method != "analytic":
        raise ValueError(
            f"variance_method={variance_method!r} applies to compensation='paper' only; the "
            "released form's constants are s(gamma) of the initial gammas"
        )
    default_x, default_h, default_c = DEFAULT_GAMMAS[variant]
    gx = _initial_gamma("gamma_x", gamma_x, default_x)
    gh = _initial_gamma("gamma_h", gamma_h, default_h)
    gc = _initial_gamma("gamma_c", gamma_c, default_c)

    key_x, key_h = jax.random.split(key)
    w_x = orthogonal_gates(key_x, input_size, hidden_size, dtype)
    w_h = orthogonal_gates(key_h, hidden_size, hidden_size, dtype)
    b = jnp.zeros((4 * hidden_size,), dtype).at[hidden_size : 2 * hidden_size].set(forget_bias)
    params = {"w_x": w_x, "w_h": w_h, "b": b}
    consts = {}
    if variant in ("weightnorm", "normprop"):
        params = project_unit_norm(params)
    if variant != "lstm":
        params["gamma_x"] = jnp.full((4 * hidden_size,), gx, dtype)
        params["gamma_h"] = jnp.full((4 * hidden_size,), gh, dtype)
    if variant in ("normprop", "layernorm", "batchnorm"):
        params["gamma_c"] = jnp.full((hidden_size,), gc, dtype)
    if variant in ("layernorm", "batchnorm"):
        params["beta_c"] = jnp.zeros((hidden_size,), dtype)
    if variant == "normprop" and compensation == "released":
        s_h, s_c = released_constants(gh, gc)
        consts = {"s_h": jnp.asarray(s_h, dtype), "s_c": jnp.asarray(s_c, dtype)}
    elif variant == "normprop":
        var_c, var_h = normprop_variances(gx, gh, gc, method=variance_method, w_h=w_h)
        consts = {"var_c": jnp.asarray(var_c, dtype), "var_h": jnp.asarray(var_h, dtype)}
    return params, consts


def project_unit_norm(params: dict) -> dict:
    """Rescales every unit's incoming weight vector in ``w_x`` and ``w_h`` to unit L2 norm.

    The paper's section 3.3: since ``W / ||W||`` is scale invariant, the raw scale of ``W`` only
    changes the effective learning rate; keeping the raw weights at unit norm after every update
    fixes it. Use it after each optimizer update of a weightnorm or normprop layer. Jit-able.

    Args:
        params: a dict with ``w_x`` [D, 4H] and ``w_h`` [H, 4H] (other entries are kept).

    Returns:
        A new dict with the columns of ``w_x`` and ``w_h`` of unit norm.

    Raises:
        ValueError: if ``w_x`` or ``w_h`` is missing.
    """
    missing = [k for k in ("w_x", "w_h") if k not in params]
    if missing:
        raise ValueError(f"project_unit_norm needs params with 'w_x' and 'w_h'; missing {missing}")
    out = dict(params)
    for k in ("w_x", "w_h"):
        out[k] = params[k] / column_norm(params[k])
    return out


def init_bn_stats(hidden_size: int, max_steps: int, dtype=jnp.float32) -> dict:
    """Population statistics of a batchnorm LSTM, one row per time step.

    Args:
        hidden_size: H.
        max_steps: T_max, the number of time steps with their own statistics. At inference, steps
            at or beyond ``max_steps`` reuse the last row (Cooijmans et al. 2016), and in training
            their moments update it (:func:`update_bn_stats`).
        dtype: floating dtype.

    Returns:
        ``{"x": {"mean", "var"}, "h": {"mean", "var"}, "c": {"mean", "var"}}`` with the
        statistics of ``x W_x`` and ``h W_h`` ([T_max, 4H]) and of ``c`` ([T_max, H]); means 0,
        variances 1.
    """
    hidden_size = _validate.positive_int("hidden_size", hidden_size)
    max_steps = _validate.positive_int("max_steps", max_steps)

    def moments(width):
        return {
            "mean": jnp.zeros((max_steps, width), dtype),
            "var": jnp.ones((max_steps, width), dtype),
        }

    return {"x": moments(4 * hidden_size), "h": moments(4 * hidden_size), "c": moments(hidden_size)}


def update_bn_stats(bn_stats: dict, moments: dict, *, momentum: float = 0.99, t0=0) -> dict:
    """Exponential moving average of batchnorm population statistics (functional).

    The step at time ``t = t0 + j`` (row ``j`` of ``moments``) updates row ``min(t, T_max - 1)``
    of the statistics, the row that inference reads at that step: its own row below ``T_max``, the
    last row at and beyond it (Cooijmans et al. 2016). Concrete or traced ``t0`` (a time index
    carried under ``jax.jit``), the same rows take the same updates.

    Args:
        bn_stats: from :func:`init_bn_stats`, rows [T_max, ...].
        moments: batch moments of ``T`` consecutive steps, as returned by
            ``run_sequence(..., return_moments=True)``: the same structure with rows [T, ...].
        momentum: weight of the old statistics, in [0, 1).
        t0: time index of the first row of ``moments``: a non-negative integer scalar (an int,
            or an integer array of shape (), traced or not).

    Returns:
        New statistics where each step's row is ``momentum * old + (1 - momentum) * batch``; the
        rows that no step maps to are unchanged.

    Raises:
        ValueError: if ``momentum`` is outside [0, 1), or ``t0`` is not an integer scalar, or is
            negative (checked when ``t0`` is concrete).

    Notes:
        When several steps map to the last row (``t0 + T > T_max``), the row takes their moments
        one step after the other, in time order, as if this function were called once per step
        (the same numbers up to float rounding): for the ``k`` steps ``j_1 < ... < j_k`` of the
        last row, ``m = momentum``,
        ``last = m**k * last + (1 - m) * sum_i m**(k - i) * batch[j_i]``.
        So a sequence layer (one call for ``T`` steps) and a step cell (one call per step) leave
        the same statistics, and no step beyond ``T_max`` ever writes to an earlier row. Only the
        values of a traced ``t0`` cannot be checked: steps at negative times update no row.

    Example:
        >>> import jax.numpy as jnp, nprnn
        >>> stats = nprnn.init_bn_stats(hidden_size=2, max_steps=3)
        >>> moments = {k: {"mean": v["mean"][:2] + 1.0, "var": v["var"][:2]}
        ...            for k, v in stats.items()}
        >>> new = nprnn.update_bn_stats(stats, moments, momentum=0.5, t0=2)  # steps 2 and 3
        >>> new["c"]["mean"][:, 0].tolist()  # row 2: 0 -> 0.5 (step 2) -> 0.75 (step 3)
        [0.0, 0.0, 0.75]
    """
    _validate.probability("momentum", momentum)
    _validate.time_index("t0", t0)
    max_steps = bn_stats["c"]["mean"].shape[0]
    steps = moments["c"]["mean"].shape[0]
    ts = t0 + jnp.arange(steps)
    tail = ts >= max_steps - 1  # the steps of the last row
    # Each step's own row; the steps of the last row (and traced negative times) go out of
    # bounds, where the scatter drops them.
    own = jnp.where(tail | (ts < 0), max_steps, ts)
    # The last row: momentum**k on the old value, momentum**(later steps of the last row) on each
    # of its steps' moments.
    count = jnp.sum(tail)
    later = jnp.where(tail, count - jnp.cumsum(tail), 0)

    def ema(old, new):
        new = new.astype(old.dtype)
        rows = old.at[own].get(mode="fill", fill_value=0)
        old = old.at[own].set(momentum * rows + (1.0 - momentum) * new, mode="drop")
        m = jnp.asarray(momentum, old.dtype)
        weights = (1.0 - momentum) * jnp.power(m, later)
        weights = weights.reshape((steps,) + (1,) * (new.ndim - 1))
        folded = jnp.sum(jnp.where(tail.reshape(weights.shape), weights * new, 0), axis=0)
        return old.at[-1].set(jnp.power(m, count) * old[-1] + folded)

    return jax.tree.map(ema, bn_stats, moments)
