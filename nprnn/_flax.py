"""What nprnn.linen and nprnn.nnx share: the carry, the checks, one step and one sequence over the
functional core, nn.RNN's layout, and the unit-norm projection of parameter trees; imports nprnn
(the public API), nprnn._lstm, nprnn._validate and nprnn.projection.

Nothing here computes an LSTM: a step is :func:`nprnn.lstm_step`, a sequence
:func:`nprnn.run_sequence`, the parameters come from :func:`nprnn.init_params`, the projection of a
tree is :mod:`nprnn.projection`'s (the training loop's). The functions here take and return plain
arrays and dicts, so that a linen module (variables in collections) and an nnx module (variables
as attributes) call them alike. ``import nprnn`` does not load this module; ``import
nprnn.linen`` or ``import nprnn.nnx`` does (it needs flax and optax).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax.linen.recurrent import flip_sequences

import nprnn
from nprnn import _validate, projection
from nprnn._lstm import COMPENSATIONS, check_variant

__all__ = [
    "CALL_OVERRIDES",
    "INIT_OPTIONS",
    "LAYER_SETTINGS",
    "LSTMCarry",
    "check_carry",
    "check_normprop_options",
    "check_options",
    "const_names",
    "project_unit_norm",
    "run_in_layout",
    "run_layer",
    "step_cell",
    "step_options",
    "unit_norm_projection",
    "zero_carry",
]

# The keyword arguments of nprnn.init_params that a cell passes on as they are.
INIT_OPTIONS = ("gamma_x", "gamma_h", "gamma_c", "forget_bias", "variance_method", "compensation")

# A sequence layer's settings (nn.RNN's, and run_sequence's), and those a call may override.
LAYER_SETTINGS = (
    "time_major",
    "return_carry",
    "reverse",
    "keep_order",
    "unroll",
    "fused_backward",
    "hoist_input",
)
CALL_OVERRIDES = ("time_major", "return_carry", "reverse", "keep_order")


# The names of a weight-normalized LSTM layer's parameters (init_params' layout): weightnorm and
# normprop have gamma_x and gamma_h but no beta_c (which layernorm and batchnorm have).
class LSTMCarry(NamedTuple):
    """The carry of the Flax cells and layers: the LSTM state and, for batchnorm, a time index.

    Named fields, like :class:`nprnn.LSTMState` and unlike Flax's own LSTM carry ``(c, h)``;
    ``carry.state`` is the ``nprnn.LSTMState(h, c)`` the functional core takes. A plain tuple is
    refused (its order would be ambiguous).

    Attributes:
        h: hidden state (the output), [*batch, H].
        c: cell, [*batch, H].
        t: batchnorm: int32 [*batch], the time index of the next step, which selects the row of
            the population statistics (``min(t, max_steps - 1)``); every step adds 1 (in
            ``nn.RNN`` with ``seq_lengths`` and ``return_carry``, the final carry of example b
            has ``t + seq_lengths[b]``, like the layer's). ``None`` for the other variants.
    """

    h: jax.Array
    c: jax.Array
    t: jax.Array | None = None

    @property
    def state(self) -> nprnn.LSTMState:
        """The ``nprnn.LSTMState(h, c)`` of this carry."""
        return nprnn.LSTMState(h=self.h, c=self.c)


# ----------------------------------------------------------------------------------------------
# Checks (before any tracing) and the cell's options.


def check_options(variant: str, max_steps, dropout_rate, bn_momentum) -> None:
    """Checks a cell's options before any tracing.

    Raises:
        ValueError: for an unknown variant (the message lists the valid ones), batchnorm without
            a positive ``max_steps``, a ``dropout_rate`` or ``bn_momentum`` outside [0, 1).
    """
    check_variant(variant)
    _validate.probability("dropout_rate", dropout_rate)
    _validate.probability("bn_momentum", bn_momentum)
    if variant != "batchnorm":
        return
    if max_steps is None:
        raise ValueError(
            "a batchnorm cell keeps population statistics per time step: pass max_steps=T_max "
            "(the rows of nprnn.init_bn_stats; later steps reuse the last row)"
        )
    _validate.positive_int("max_steps", max_steps)


def check_carry(carry, variant: str) -> LSTMCarry:
    """Returns ``carry`` if it is an :class:`LSTMCarry` that fits ``variant``.

    Raises:
        TypeError: for anything but an ``LSTMCarry`` (Flax's own LSTM carry is ``(c, h)``).
        ValueError: for a batchnorm carry without its time index ``t``.
    """
    if not isinstance(carry, LSTMCarry):
        raise TypeError(
            f"carry must be an nprnn.linen.LSTMCarry(h, c, t), got {type(carry).__name__}. A plain "
            "tuple is refused because its order is ambiguous (Flax's LSTM carry is (c, h)); make "
            "one with cell.initialize_carry(...) or LSTMCarry(h=h, c=c)"
        )
    if variant == "batchnorm" and carry.t is None:
        raise ValueError(
            "a batchnorm carry needs its time index t (int32 [*batch]): make it with "
            "cell.initialize_carry(...) or LSTMCarry(h=h, c=c, t=t)"
        )
    return carry


def step_options(dropout_rate: float, matmul_dtype, bn_momentum: float) -> dict:
    """The ``opts`` of :func:`step_cell` and :func:`run_layer` from a cell's attributes."""
    return {"dropout_rate": dropout_rate, "matmul_dtype": matmul_dtype, "momentum": bn_momentum}


def zero_carry(variant: str, features: int, input_shape, dtype, carry_init=None, keys=None):
    """The initial :class:`LSTMCarry` for inputs of ``input_shape`` ([*batch, D]).

    ``h`` and ``c`` are ``carry_init(key, [*batch, H], dtype)`` with ``keys = (key_c, key_h)``
    (zeros when ``carry_init`` is None); ``t`` is 0 for batchnorm, else None.
    """
    batch = tuple(input_shape[:-1])
    shape = (*batch, features)
    if carry_init is None:
        h = c = jnp.zeros(shape, dtype)
    else:
        c, h = (carry_init(k, shape, dtype) for k in keys)
    t = jnp.zeros(batch, jnp.int32) if variant == "batchnorm" else None
    return LSTMCarry(h=h, c=c, t=t)


def check_normprop_options(variance_method: str, compensation: str) -> None:
    """Checks normprop's ``variance_method`` and ``compensation`` before any tracing.

    Raises:
        ValueError: for an unknown method or form (the message lists the valid ones).
    """
    _validate.one_of("variance method", variance_method, nprnn.VARIANCE_METHODS)
    _validate.one_of("compensation", compensation, tuple(COMPENSATIONS))


def const_names(variant: str, compensation: str) -> tuple[str, ...]:
    """The names of a layer's frozen constants, the keys of :func:`nprnn.init_params`' ``consts``.

    normprop: ``("var_c", "var_h")`` for ``compensation="paper"`` (analytic or simulated),
    ``("s_h", "s_c")`` for ``"released"``; ``()`` for the other variants. Found from the names
    alone: no quadrature, no weights.
    """
    return COMPENSATIONS[compensation] if variant == "normprop" else ()


# ----------------------------------------------------------------------------------------------
# One step, one sequence, nn.RNN's layout.


def _one_batch_axis(carry: LSTMCarry, inputs, lead: int):
    """``carry`` and ``inputs`` (``lead`` leading axes, then [*batch, D]) with the batch axes
    flattened into one, as the core takes them, and the function that restores
    ``(carry, outputs)``. No or one batch axis: unchanged."""
    batch = inputs.shape[lead:-1]
    if len(batch) <= 1:
        return carry, inputs, lambda carry, out: (carry, out)
    inputs = inputs.reshape(*inputs.shape[:lead], -1, inputs.shape[-1])
    carry = jax.tree.map(lambda a: a.reshape(-1, *a.shape[len(batch) :]), carry)

    def restore(carry, out):
        carry = jax.tree.map(lambda a: a.reshape(*batch, *a.shape[1:]), carry)
        return carry, out.reshape(*out.shape[:lead], *batch, out.shape[-1])

    return carry, inputs, restore


def step_cell(params, consts, bn_stats, carry: LSTMCarry, x, *, variant, training, key, opts):
    """One step of a cell with :func:`nprnn.lstm_step`.

    Args:
        params, consts: the layer's, as from :func:`nprnn.init_params`.
        bn_stats: batchnorm population statistics, or None.
        carry: :class:`LSTMCarry`, [*batch, H] (``t`` selects the statistics' row).
        x: [*batch, D].
        variant: one of :data:`nprnn.VARIANTS`.
        training: the core's ``training``: recurrent dropout, batchnorm's batch statistics.
        key: this step's dropout key, or None.
        opts: :func:`step_options`.

    Returns:
        ``(carry, h, new_bn_stats)``; ``new_bn_stats`` (batchnorm in training, else None) has
        row ``max(t)`` replaced by its moving average with this step's batch moments.
    """
    carry, x, restore = _one_batch_axis(carry, x, lead=0)
    moments_wanted = training and variant == "batchnorm"
    out = nprnn.lstm_step(
        params,
        consts,
        carry.state,
        x,
        variant=variant,
        training=training,
        bn_stats=bn_stats,
        t=carry.t,
        key=key,
        dropout_rate=opts["dropout_rate"],
        return_moments=moments_wanted,
        matmul_dtype=opts["matmul_dtype"],
    )
    new_stats = None
    if moments_wanted:
        state, (h, moments) = out
        rows = jax.tree.map(lambda m: m[None], moments)
        new_stats = nprnn.update_bn_stats(
            bn_stats, rows, momentum=opts["momentum"], t0=jnp.max(carry.t)
        )
    else:
        state, h = out
    t = None if carry.t is None else carry.t + 1
    carry, h = restore(LSTMCarry(h=state.h, c=state.c, t=t), h)
    return carry, h, new_stats


def run_layer(
    params, consts, bn_stats, carry: LSTMCarry, xs, *, variant, training, key, seq_lengths, opts
):
    """A whole time-major sequence with one :func:`nprnn.run_sequence` call.

    Args:
        params, consts, bn_stats, variant, training: as in :func:`step_cell`.
        carry: :class:`LSTMCarry`, [*batch, H]; batchnorm takes ``t0 = max(carry.t)`` for the
            whole batch (``run_sequence`` has one ``t0``).
        xs: [T, *batch, D]; several batch axes are flattened into one for the call.
        key: dropout key of the sequence (split into one per step by ``run_sequence``), or None.
        seq_lengths: optional [*batch] lengths of right-padded sequences.
        opts: :func:`step_options`, plus ``unroll``, ``fused_backward``, ``hoist_input``.

    Returns:
        ``(carry, hs, new_bn_stats)``: the state after each example's last valid step, its ``t``
        advanced by ``seq_lengths`` (else T); ``hs`` [T, *batch, H], zero at padded steps;
        ``new_bn_stats`` (batchnorm in training, else None) with rows ``t0 .. t0 + T - 1``
        replaced by their moving averages; the steps at and beyond ``max_steps`` update the last
        row, the one inference reads there (:func:`nprnn.update_bn_stats`).
    """
    moments_wanted = training and variant == "batchnorm"
    advance = xs.shape[0] if seq_lengths is None else seq_lengths
    carry, xs, restore = _one_batch_axis(carry, xs, lead=1)
    t0 = 0 if carry.t is None else jnp.max(carry.t)
    state, out = nprnn.run_sequence(
        params,
        consts,
        carry.state,
        xs,
        variant=variant,
        training=training,
        bn_stats=bn_stats,
        t0=t0,
        key=key,
        dropout_rate=opts["dropout_rate"],
        seq_lengths=None if seq_lengths is None else jnp.reshape(seq_lengths, xs.shape[1:-1]),
        unroll=opts["unroll"],
        return_moments=moments_wanted,
        fused_backward=opts["fused_backward"],
        matmul_dtype=opts["matmul_dtype"],
        hoist_input=opts["hoist_input"],
    )
    hs, new_stats = out, None
    if moments_wanted:
        hs, moments = out
        new_stats = nprnn.update_bn_stats(bn_stats, moments, momentum=opts["momentum"], t0=t0)
    carry, hs = restore(LSTMCarry(h=state.h, c=state.c, t=carry.t), hs)
    if carry.t is not None:
        carry = carry._replace(t=carry.t + advance)
    return carry, hs, new_stats


def run_in_layout(
    run: Callable, init_carry: Callable, inputs, settings, initial_carry, seq_lengths, overrides
):
    """A sequence layer's call: the cell's ``run`` (one :func:`run_layer`) with ``nn.RNN``'s
    conventions.

    Args:
        run: the layer's cell's ``run``; ``run(carry, xs [T, *batch, D], seq_lengths=...,
            **opts)`` returns ``(carry, hs)``.
        init_carry: ``input_shape -> carry`` (the shape without the time axis), used when
            ``initial_carry`` is None.
        inputs: [*batch, T, D], or [T, *batch, D] with ``time_major``.
        settings: the layer's :data:`LAYER_SETTINGS`, by name: ``reverse`` runs each sequence
            from its last valid step to its first (padding stays at the end) and returns the
            outputs in that order unless ``keep_order``, as in ``nn.RNN``.
        initial_carry: the carry, or None.
        seq_lengths: optional [*batch] lengths of right-padded sequences.
        overrides: the call's keyword overrides of :data:`CALL_OVERRIDES`; ``None`` values are
            ignored, as in ``nn.RNN``.

    Returns:
        The outputs in ``inputs``' layout, or ``(carry, outputs)`` with ``return_carry``.

    Raises:
        TypeError: for an override that is not one of :data:`CALL_OVERRIDES`.
    """
    unknown = sorted(set(overrides) - set(CALL_OVERRIDES))
    if unknown:
        raise TypeError(
            f"unexpected keyword arguments {unknown}; a call may override {CALL_OVERRIDES}"
        )
    how = {**settings, **{k: v for k, v in overrides.items() if v is not None}}
    opts = {k: how[k] for k in ("unroll", "fused_backward", "hoist_input")}
    xs = inputs if how["time_major"] else jnp.moveaxis(inputs, -2, 0)
    flip = {"seq_lengths": seq_lengths, "num_batch_dims": xs.ndim - 2, "time_major": True}
    if how["reverse"]:
        xs = flip_sequences(xs, **flip)
    carry = init_carry(xs.shape[1:]) if initial_carry is None else initial_carry
    carry, hs = run(carry, xs, seq_lengths=seq_lengths, **opts)
    if how["reverse"] and how["keep_order"]:
        hs = flip_sequences(hs, **flip)
    if not how["time_major"]:
        hs = jnp.moveaxis(hs, 0, -2)
    return (carry, hs) if how["return_carry"] else hs


# ----------------------------------------------------------------------------------------------
# The unit-norm projection over a parameter tree: nprnn.projection's, the one training uses too.


def project_unit_norm(tree):
    """Projects every weight-normalized LSTM layer of a parameter tree to unit-norm columns.

    The paper's section 3.3 (:func:`nprnn.project_unit_norm`) for a whole model: linen
    ``variables`` or ``variables["params"]``, an ``nnx.State``, nested dicts. A layer is any
    mapping in the tree with ``w_x``, ``w_h``, ``gamma_x`` and ``gamma_h`` and without
    ``beta_c``: the weightnorm and normprop layers of :func:`nprnn.init_params` (a plain LSTM has
    no gammas; layernorm and batchnorm have ``beta_c``). Their ``w_x``, ``w_h`` are rescaled;
    every other leaf is returned as it is. Jit-able. The same rule as the training loop's
    (:func:`nprnn.projection.project_tree`).

    Args:
        tree: a pytree of arrays.

    Returns:
        The same structure, with the weight-normalized layers projected.

    Example:
        >>> import jax, jax.numpy as jnp, nprnn.linen
        >>> tree = {"lstm": {"w_x": jnp.ones((2, 4)), "w_h": jnp.ones((1, 4)),
        ...                  "gamma_x": jnp.ones(4), "gamma_h": jnp.ones(4)},
        ...         "dense": {"w_x": jnp.ones((2, 4))}}
        >>> out = nprnn.linen.project_unit_norm(tree)
        >>> float(out["lstm"]["w_x"][0, 0]), float(out["dense"]["w_x"][0, 0])
        (0.7071067690849304, 1.0)
    """
    return projection.project_tree(tree)


def unit_norm_projection() -> optax.GradientTransformation:
    """An optax transformation that makes the update land on unit-norm weights.

    Put it last in a chain (``optax.chain(optax.adam(lr), unit_norm_projection())``): for the
    ``w_x``, ``w_h`` of every weight-normalized layer (see :func:`project_unit_norm`) it turns
    the update ``u`` into ``P(p + u) - p``, so that ``optax.apply_updates`` gives the projected
    weights ``P(p + u)`` (up to one float rounding). It needs the parameters:
    ``tx.update(grads, state, params)``, which ``nnx.Optimizer`` and the usual linen training
    loops pass. The transformation ``train.py`` puts in its own chain
    (:func:`nprnn.projection.unit_norm_projection`).

    Returns:
        A stateless ``optax.GradientTransformation``.

    Raises:
        ValueError: at ``update`` without ``params``.
    """
    return projection.unit_norm_projection()
