"""The public step and sequence functions of an LSTM layer; imports nprnn._lstm, nprnn._runners
and nprnn._validate.

``lstm_step`` and ``run_sequence`` for the five variants of :data:`nprnn.VARIANTS`, validated
once by one shared check; the maths is in :mod:`nprnn._lstm`, the scans in :mod:`nprnn._runners`.

Shapes use T (time), B (batch), D (input), H (hidden). Sequences are time-major, [T, B, D].
Gates are fused along the last axis in the paper's order i, f, o, g. With
``z = [i~, f~, o~, g~]`` the pre-activations (4H) and ``sigma`` the logistic sigmoid, every
variant shares the cell update (eq. 14)::

    c_t = sigma(i~) * d(tanh(g~)) + sigma(f~) * c_{t-1}

where ``d`` is recurrent dropout (identity unless enabled) and differs in ``z`` and ``h_t``:

``lstm``
    ``z = x W_x + h W_h + b``; ``h_t = sigma(o~) * tanh(c_t)``.
``weightnorm``
    ``z = gamma_x * (x W_x / ||W_x||) + gamma_h * (h W_h / ||W_h||) + b`` (eq. 13), where
    ``||W||`` is the L2 norm of each unit's incoming weights (a column, [4H]);
    ``h_t = sigma(o~) * tanh(c_t)``.
``normprop``
    ``z`` as weightnorm (eq. 13);
    ``h_t = sigma(o~) * tanh(gamma_c * c_t / sqrt(var_c)) / sqrt(var_h)`` (eq. 15), with the
    frozen constants ``var_c``, ``var_h`` of ``consts``.
``layernorm`` (Ba et al. 2016)
    ``z = LN(x W_x) * gamma_x + LN(h W_h) * gamma_h + b``;
    ``h_t = sigma(o~) * tanh(LN(c_t) * gamma_c + beta_c)``. LN standardizes each example over its
    features: over all 4H pre-activations for the two projections, over the H units for the cell.
``batchnorm`` (Cooijmans et al. 2016)
    ``z = BN_t(x W_x) * gamma_x + BN_t(h W_h) * gamma_h + b``;
    ``h_t = sigma(o~) * tanh(BN_t(c_t) * gamma_c + beta_c)``. BN_t standardizes each feature over
    the batch with the statistics of time step t: the batch's own in training, the population
    statistics of row ``min(t, T_max - 1)`` of ``bn_stats`` at inference.

In the normalized variants the projections have no shift of their own: the bias ``b`` plays that
role (Cooijmans et al. set beta_x = beta_h = 0 for the same reason). Normalizations use
``NORM_EPSILON`` inside the square root.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop.
  J. L. Ba, J. R. Kiros, G. E. Hinton. Layer Normalization. 2016.
  T. Cooijmans, N. Ballas, C. Laurent, C. Gulcehre, A. Courville. Recurrent Batch
  Normalization. ICLR 2017.
  S. Semeniuta, A. Severyn, E. Barth. Recurrent Dropout without Memory Loss. COLING 2016.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from nprnn import _validate
from nprnn._lstm import (
    COMPENSATIONS,
    NORM_EPSILON,
    LSTMState,
    cell_update,
    check_state,
    check_variant,
    compensation_of,
    dropout_mask,
    input_preact,
    matmul,
    prepare,
)
from nprnn._runners import RUNNERS, runner_path, scan_inputs

__all__ = [
    "LSTMState",
    "broadcast_state",
    "init_state",
    "lstm_step",
    "run_sequence",
    "NORM_EPSILON",
]

_REQUIRED = {
    "lstm": ("w_x", "w_h", "b"),
    "weightnorm": ("w_x", "w_h", "b", "gamma_x", "gamma_h"),
    "normprop": ("w_x", "w_h", "b", "gamma_x", "gamma_h", "gamma_c"),
    "layernorm": ("w_x", "w_h", "b", "gamma_x", "gamma_h", "gamma_c", "beta_c"),
    "batchnorm": ("w_x", "w_h", "b", "gamma_x", "gamma_h", "gamma_c", "beta_c"),
}


# run_sequence's error for forward-mode autodiff through the hand-written backward pass.
_FORWARD_MODE_ERROR = (
    "run_sequence's default hand-written backward pass (a jax.custom_vjp) supports reverse mode "
    "only (jax.grad, jax.vjp, jax.jacrev): for forward mode (jax.jvp, jax.jacfwd, "
    "jax.linearize) pass fused_backward=False, plain autodiff of the scan (the same numbers)"
)


def init_state(batch_size: int, hidden_size: int, dtype=jnp.float32) -> LSTMState:
    """Zero state ``LSTMState(h=0, c=0)`` of shape [B, H].

    Any ``LSTMState`` of the right shape can be used instead, for example a trainable initial state
    broadcast to the batch.

    Raises:
        ValueError: for a non-positive size or a non-floating dtype.
    """
    batch_size = _validate.positive_int("batch_size", batch_size)
    hidden_size = _validate.positive_int("hidden_size", hidden_size)
    dtype = _validate.floating_dtype("dtype", dtype)
    zeros = jnp.zeros((batch_size, hidden_size), dtype)
    return LSTMState(h=zeros, c=zeros)


def broadcast_state(initial: dict, batch_size: int, dtype=None) -> LSTMState:
    """A trainable initial state ``{"h": [H], "c": [H]}`` broadcast to ``LSTMState`` [B, H].

    The released code of Laurent et al. trains ``h_0`` and ``c_0`` (Blocks' LSTM brick keeps them
    as parameters, zeros at init); keep them in the model's parameters and broadcast them with
    this function at the start of every sequence. Gradients flow back to ``initial``.

    Args:
        initial: a mapping with the vectors ``"h"`` and ``"c"``, both [H].
        batch_size: B.
        dtype: the state's dtype (None: that of ``initial["h"]``).

    Raises:
        ValueError: if ``"h"`` or ``"c"`` is missing or not a vector, or they differ in shape.
    """
    batch_size = _validate.positive_int("batch_size", batch_size)
    missing = [k for k in ("h", "c") if k not in initial]
    if missing:
        raise ValueError(f"broadcast_state needs 'h' and 'c' in initial; missing {missing}")
    h, c = jnp.asarray(initial["h"]), jnp.asarray(initial["c"])
    if h.ndim != 1 or h.shape != c.shape:
        raise ValueError(
            f"the initial state's 'h' and 'c' must be vectors of the same size [H], got shapes "
            f"{h.shape} and {c.shape}"
        )
    dtype = h.dtype if dtype is None else _validate.floating_dtype("dtype", dtype)
    shape = (batch_size, h.shape[0])
    h, c = (jnp.broadcast_to(v, shape).astype(dtype) for v in (h, c))
    return LSTMState(h=h, c=c)


# ----------------------------------------------------------------------------------------------
# Validation (Python level, before any tracing of the maths).


def _check_call(
    params,
    consts,
    state,
    x,
    *,
    variant,
    seq,
    training,
    bn_stats,
    t,
    key,
    dropout_rate,
    return_moments,
    matmul_dtype,
    seq_lengths=None,
):
    """The one validation of :func:`lstm_step` (``seq=False``) and :func:`run_sequence`."""
    check_variant(variant)
    _check_params(params, consts, variant)
    batch_shape = _check_arrays(params, state, x, seq)
    _validate.probability("dropout_rate", dropout_rate)
    if training and dropout_rate > 0.0 and key is None:
        raise ValueError("recurrent dropout in training needs a PRNG key: pass key=...")
    if variant == "batchnorm":
        _check_batchnorm(params, bn_stats, batch_shape, training, t, seq)
    if return_moments and not (variant == "batchnorm" and training):
        raise ValueError("return_moments=True is only meaningful for batchnorm with training=True")
    if seq_lengths is not None and jnp.shape(seq_lengths) != batch_shape:
        raise ValueError(
            f"seq_lengths must have shape {batch_shape} (the batch of xs), "
            f"got {jnp.shape(seq_lengths)}"
        )
    if matmul_dtype is not None:
        _validate.floating_dtype("matmul_dtype", matmul_dtype)


def _check_params(params, consts, variant):
    """Checks that ``params`` and ``consts`` are exactly the variant's (see :data:`_REQUIRED` and
    :data:`nprnn._lstm.COMPENSATIONS`): a missing key and a key of another variant both raise."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict (a Mapping), got {type(params).__name__}")
    if consts is not None and not isinstance(consts, Mapping):
        raise TypeError(f"consts must be a dict (a Mapping), got {type(consts).__name__}")
    expected = _REQUIRED[variant]
    missing = [k for k in expected if k not in params]
    if missing:
        raise ValueError(
            f"params for variant {variant!r} lack {missing}; make them with init_params"
        )
    extra = sorted(k for k in params if k not in expected)
    if extra:
        same = [repr(v) for v, keys in _REQUIRED.items() if set(keys) == set(params)]
        hint = f" (they are the params of variant {' or '.join(same)})" if same else ""
        raise ValueError(
            f"params for variant {variant!r} have keys that do not belong to it: {extra}{hint}; "
            f"{variant!r} takes exactly {list(expected)}"
        )
    consts = {} if consts is None else consts
    if variant != "normprop":
        if consts:
            raise ValueError(
                f"consts for variant {variant!r} have keys that do not belong to it: "
                f"{sorted(consts)}; {variant!r} takes no constants (consts={{}}), only normprop "
                "has them"
            )
        return
    forms = " or ".join(
        f"{keys[0]!r} and {keys[1]!r} (compensation {name!r})"
        for name, keys in COMPENSATIONS.items()
    )
    form = compensation_of(consts)
    if form is None:
        raise ValueError(f"consts for variant 'normprop' need {forms}; make them with init_params")
    extra = sorted(k for k in consts if k not in COMPENSATIONS[form])
    if extra:
        raise ValueError(
            f"consts for variant 'normprop' have keys that do not belong to its {form!r} form: "
            f"{extra}; it takes {forms}, one form only"
        )


def _check_arrays(params, state, x, seq) -> tuple:
    """Checks the input and the state against the layer; returns the batch shape."""
    what = "xs" if seq else "x"
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{what} must be an array, got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{what} must have a floating dtype, got {x.dtype}")
    ranks = (2, 3) if seq else (1, 2)
    layout = "[T, B, D] (or [T, D])" if seq else "[B, D] (or [D])"
    if x.ndim not in ranks:
        raise ValueError(f"{what} must have shape {layout}, got rank {x.ndim} shape {x.shape}")
    input_size, hidden_size = params["w_x"].shape[0], params["w_h"].shape[0]
    if x.shape[-1] != input_size:
        raise ValueError(
            f"{what} has {x.shape[-1]} features but the layer expects input_size={input_size}"
        )
    check_state(state)
    batch_shape = x.shape[1:-1] if seq else x.shape[:-1]
    expected = (*batch_shape, hidden_size)
    for name, value in zip(("h", "c"), state, strict=True):
        if tuple(getattr(value, "shape", ())) != expected:
            raise ValueError(
                f"state.{name} has shape {getattr(value, 'shape', None)} but {what} of shape "
                f"{x.shape} and hidden_size={hidden_size} need {expected}"
            )
    return batch_shape


def _check_batchnorm(params, bn_stats, batch_shape, training, t, seq):
    """Batchnorm's statistics and time index: ``t0`` of a sequence is an integer scalar, ``t`` of
    a step an integer scalar or one per example ([B]); both non-negative when concrete."""
    if seq:
        _validate.time_index("t0", t)
    elif t is not None:
        _validate.time_index("t", t, shapes=((), batch_shape))
    if training:
        if not batch_shape:
            raise ValueError("batchnorm in training needs a batch axis: x of shape [B, D]")
        return
    if bn_stats is None:
        raise ValueError("batchnorm at inference needs bn_stats (from nprnn.init_bn_stats)")
    hidden_size = params["w_h"].shape[0]
    if bn_stats["c"]["mean"].shape[-1] != hidden_size:
        raise ValueError(
            f"bn_stats are for hidden_size={bn_stats['c']['mean'].shape[-1]}, "
            f"the layer has hidden_size={hidden_size}"
        )
    if t is None:
        raise ValueError("batchnorm at inference needs the time step t=... to pick statistics")


# ----------------------------------------------------------------------------------------------
# Public API.


def lstm_step(
    params: Mapping,
    consts: Mapping | None,
    state: LSTMState,
    x: jax.Array,
    *,
    variant: str,
    training: bool = False,
    bn_stats: dict | None = None,
    t=None,
    key: jax.Array | None = None,
    dropout_rate: float = 0.0,
    return_moments: bool = False,
    matmul_dtype=None,
):
    """One time step of an LSTM layer of the given variant (eq. 13-15 for normprop).

    Carry-first, so that it scans directly::

            step = functools.partial(nprnn.lstm_step, params, consts, variant="normprop")
            state, hs = jax.lax.scan(step, state, xs)

    For a whole sequence prefer :func:`run_sequence`, which does the weight normalization and the
    input projection of all steps once, before the scan.

    Args:
        params: trainable parameters from :func:`nprnn.init_params`: a dict (any ``Mapping``, e.g.
            a ``flax.core.FrozenDict``) with exactly the variant's keys.
        consts: frozen constants from :func:`nprnn.init_params` (``var_c``, ``var_h`` or ``s_h``,
            ``s_c`` for normprop, empty for the other variants), a ``Mapping`` too.
        state: ``LSTMState(h, c)``, each [B, H].
        x: input x_t, [B, D]; a single example [D] with a state of [H] is accepted too (so the step
            can be ``jax.vmap``-ed over examples).
        variant: one of :data:`nprnn.VARIANTS`.
        training: enables recurrent dropout and, for batchnorm, the batch statistics.
        bn_stats: batchnorm only: population statistics (:func:`nprnn.init_bn_stats`), needed at
            inference.
        t: batchnorm only: the time step, a non-negative integer (scalar, or one per example
            [B]), which selects the row ``min(t, T_max - 1)`` of ``bn_stats`` at inference.
        key: PRNG key of this step's recurrent-dropout mask; needed when ``training`` and
            ``dropout_rate > 0``.
        dropout_rate: recurrent dropout probability on the cell candidate ``tanh(g~)``
            (Semeniuta et al. 2016), inverted scaling; 0 disables it. Applied only when
            ``training``.
        return_moments: batchnorm with ``training=True`` only: also return the batch moments.
        matmul_dtype: mixed precision: the dtype of the two matrix products (e.g.
            ``jnp.bfloat16``); the normalized weights are cast to it after the weight
            normalization, products accumulate in the dtype of ``x``, and the state, the gates
            and the variance constants stay in full precision. ``None``: no cast.

    Returns:
        ``(state, h)``: the new ``LSTMState`` and its ``h`` ([B, H]). With ``return_moments``,
        ``(state, (h, moments))`` where ``moments = {"x"|"h"|"c": {"mean", "var"}}`` are the batch
        statistics used, ready for :func:`nprnn.update_bn_stats` once stacked over time (scan does
        that).

    Raises:
        ValueError: for an unknown variant, a wrong rank or feature size of ``x``, a state that does
            not match, a non-floating ``x``, parameters or constants that are not exactly the
            variant's (a missing key, or one of another variant: the message names them), missing
            batchnorm statistics, a negative or non-integer ``t``.
        TypeError: for ``params`` or ``consts`` that are not a ``Mapping``, or a state that is
            not an ``LSTMState``.

    Example:
        >>> import jax, jax.numpy as jnp, nprnn
        >>> params, consts = nprnn.init_params(
        ...     jax.random.key(0), input_size=3, hidden_size=5, variant="normprop")
        >>> state = nprnn.init_state(2, 5)
        >>> state, h = nprnn.lstm_step(params, consts, state, jnp.ones((2, 3)), variant="normprop")
        >>> h.shape
        (2, 5)
    """
    _check_call(
        params,
        consts,
        state,
        x,
        variant=variant,
        seq=False,
        training=training,
        bn_stats=bn_stats,
        t=t,
        key=key,
        dropout_rate=dropout_rate,
        return_moments=return_moments,
        matmul_dtype=matmul_dtype,
    )
    p = prepare(params, consts, variant, matmul_dtype)
    opts = dict(variant=variant, training=training, bn_stats=bn_stats)
    zx, x_moments = input_preact(p, matmul(x, p["w_x"]), t, **opts)
    mask = dropout_mask(key, dropout_rate, state.h.shape, state.h.dtype) if training else None
    state, moments = cell_update(p, state.c, matmul(state.h, p["w_h"]), zx, t, mask, **opts)
    if return_moments:
        return state, (state.h, {"x": x_moments, **moments})
    return state, state.h


def run_sequence(
    params: Mapping,
    consts: Mapping | None,
    state: LSTMState,
    xs: jax.Array,
    *,
    variant: str,
    training: bool = False,
    bn_stats: dict | None = None,
    t0=0,
    key: jax.Array | None = None,
    dropout_rate: float = 0.0,
    seq_lengths: jax.Array | None = None,
    unroll: int | bool = 1,
    return_moments: bool = False,
    fused_backward: bool = True,
    matmul_dtype=None,
    hoist_input: bool | None = None,
):
    """Runs an LSTM layer over a time-major sequence with ``jax.lax.scan``.

    Equivalent to a Python loop of :func:`lstm_step` over ``t = t0, t0 + 1, ...`` (with the step
    keys ``jax.random.split(key, T)``), but the work that does not depend on the time step is done
    once, before the scan: the weight normalization (weightnorm, normprop) and, where it pays
    (``hoist_input``), the input projection ``xs @ W_x`` of all T steps as one matrix product and
    its normalization (layernorm, batchnorm). Differentiation uses a hand-written backward pass
    that computes the weight gradients as one product each (``fused_backward``).

    Args:
        params: trainable parameters from :func:`nprnn.init_params` (any ``Mapping``), exactly
            the variant's keys, as in :func:`lstm_step`.
        consts: frozen constants from :func:`nprnn.init_params` (any ``Mapping``).
        state: initial ``LSTMState(h, c)``, each [B, H].
        xs: inputs, [T, B, D] (or [T, D] for a single example with a state of [H]).
        variant: one of :data:`nprnn.VARIANTS`.
        training: enables recurrent dropout and, for batchnorm, the batch statistics of each step.
        bn_stats: batchnorm at inference: population statistics (:func:`nprnn.init_bn_stats`).
        t0: time index of ``xs[0]`` (batchnorm statistics rows), for sequences cut into chunks: a
            non-negative integer scalar, concrete or traced. Step ``t0 + j`` reads row
            ``min(t0 + j, T_max - 1)`` at inference; its moments (``return_moments``) belong to
            the same row, where :func:`nprnn.update_bn_stats` puts them.
        key: PRNG key for recurrent dropout (split into one key per step).
        dropout_rate: recurrent dropout probability on ``tanh(g~)``; see :func:`lstm_step`.
        seq_lengths: optional [B] integer lengths of right-padded sequences. At steps
            ``t >= seq_lengths[b]`` the state of example b is carried through unchanged and its
            output is zero, so the final state is the state after its last valid step.
            (Batchnorm's batch statistics in training still include the padded positions.)
        unroll: passed to ``jax.lax.scan`` (reference path, ``fused_backward=False``).
        return_moments: batchnorm with ``training=True`` only: also return the batch moments
            (they are not differentiated: treat them as constants).
        fused_backward: differentiate with the hand-written backward pass of ``nprnn._fused``:
            the recurrent weight gradient as one matrix product after the backward recurrence,
            as fused LSTM kernels do. ``False``: plain autodiff of ``lax.scan``, the reference.
            Same numbers up to float rounding. The hand-written pass is a ``jax.custom_vjp``, so
            it supports reverse mode only (``jax.grad``, ``jax.vjp``, ``jax.jacrev``); forward
            mode (``jax.jvp``, ``jax.jacfwd``, ``jax.linearize``) needs ``False``.
        matmul_dtype: mixed precision, as in :func:`lstm_step`.
        hoist_input: compute the input projection ``xs @ W_x`` of all steps (and its
            normalization) as one product before the scan (``True``), or ``x_t @ W_x`` inside
            the loop (``False``). ``None``: inside the loop on CPU, where we measured scanning
            over the [T, B, 4H] projection to be up to 2x slower than projecting in the loop
            (``benchmarks/scan_input_projection.py``), hoisted elsewhere. Same numbers up to
            float rounding; the weight normalization is always done once, before the scan.

    Returns:
        ``(state, hs)``: the final ``LSTMState`` and the outputs ``hs`` [T, B, H]. With
        ``return_moments``, ``(state, (hs, moments))`` where ``moments`` has rows [T, ...] for
        :func:`nprnn.update_bn_stats`: like :func:`lstm_step` and ``jax.lax.scan``, the result
        is always a pair ``(final carry, outputs)``, so ``state, hs = run_sequence(...)`` and
        ``state, (hs, moments) = run_sequence(..., return_moments=True)``.

    Raises:
        ValueError: as :func:`lstm_step`, for ``seq_lengths`` of the wrong shape, and for a
            batchnorm ``t0`` that is not an integer scalar or is negative.
        TypeError: as :func:`lstm_step`, and for forward-mode autodiff (``jax.jvp``,
            ``jax.jacfwd``) through the default ``fused_backward=True``: the message says to pass
            ``fused_backward=False``. (When the forward-mode transformation reaches
            ``run_sequence`` only through an inner ``jax.jit`` or ``jax.linearize``, the error
            is JAX's own "can't apply forward-mode autodiff (jvp) to a custom_vjp function".)

    Example:
        >>> import jax, jax.numpy as jnp, nprnn
        >>> params, consts = nprnn.init_params(
        ...     jax.random.key(0), input_size=3, hidden_size=5, variant="layernorm")
        >>> xs = jnp.ones((7, 2, 3))
        >>> state, hs = nprnn.run_sequence(
        ...     params, consts, nprnn.init_state(2, 5), xs, variant="layernorm")
        >>> hs.shape
        (7, 2, 5)
    """
    _check_call(
        params,
        consts,
        state,
        xs,
        variant=variant,
        seq=True,
        training=training,
        bn_stats=bn_stats,
        t=t0,
        key=key,
        dropout_rate=dropout_rate,
        return_moments=return_moments,
        matmul_dtype=matmul_dtype,
        seq_lengths=seq_lengths,
    )
    p = prepare(params, consts, variant, matmul_dtype)
    if hoist_input is None:
        hoist_input = jax.default_backend() != "cpu"
    opts = dict(variant=variant, training=training, bn_stats=bn_stats)
    inputs, x_moments = scan_inputs(
        p,
        state,
        xs,
        t0=t0,
        key=key,
        dropout_rate=dropout_rate,
        seq_lengths=seq_lengths,
        hoist=hoist_input,
        **opts,
    )
    run = RUNNERS[runner_path(variant, fused_backward)]
    try:
        state, hs, moments = run(p, state, inputs, project=not hoist_input, unroll=unroll, **opts)
    except TypeError as err:
        if fused_backward and "forward-mode autodiff" in str(err):
            raise TypeError(_FORWARD_MODE_ERROR) from err
        raise
    if not hoist_input:
        x_moments = moments.pop("x", None)
    if return_moments:
        return state, (hs, {"x": x_moments, **moments})
    return state, hs
