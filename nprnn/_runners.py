"""The scans behind ``run_sequence``: their inputs and a table of three runners; imports
nprnn._lstm and nprnn._fused.

Every runner has one signature::

    runner(p, state, inputs, *, variant, training, bn_stats, project, unroll)
        -> (final LSTMState, hs [T, ..., H], moments)

with ``p`` the prepared parameters (:func:`nprnn._lstm.prepare`), ``inputs`` a
:class:`ScanInputs`, ``project`` whether ``inputs.seq`` holds the raw inputs (the product
``x_t @ W_x`` is then done inside the loop) or the hoisted input part of the pre-activations, and
``moments`` the per-step batch moments (``{}`` when the variant has none). The paths:

``"gated"``
    lstm, weightnorm, normprop: :func:`nprnn._fused.gated_scan`, closed-form backward.
``"fused"``
    layernorm, batchnorm: :func:`nprnn._fused.fused_scan`, backward by per-step ``jax.vjp``.
``"reference"``
    any variant: a plain ``jax.lax.scan`` of :func:`nprnn._lstm.elementwise_step`, differentiated
    by autodiff (the only path that honours ``unroll``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nprnn import _fused
from nprnn._lstm import (
    GATED_VARIANTS,
    LSTMState,
    dropout_mask,
    elementwise_step,
    input_preact,
    matmul,
)

__all__ = ["RUNNERS", "ScanInputs", "runner_path", "scan_inputs"]


class ScanInputs(NamedTuple):
    """What a runner scans over, one row per time step.

    Attributes:
        seq: the inputs [T, B, D] (``project=True``) or the input part of the pre-activations
            [T, B, 4H] (hoisted).
        ts: [T] time indices (batchnorm statistics rows).
        masks: [T, B, H] recurrent-dropout masks, or None.
        valid: [T, B] booleans, False at padded steps, or None.
    """

    seq: jax.Array
    ts: jax.Array
    masks: jax.Array | None
    valid: jax.Array | None


def scan_inputs(
    p, state, xs, *, variant, training, bn_stats, t0, key, dropout_rate, seq_lengths, hoist
):
    """The :class:`ScanInputs` of a sequence and the moments of a hoisted input normalization.

    With ``hoist`` the input projection of all steps is one product ``xs @ W_x`` followed by its
    normalization; otherwise ``seq`` is ``xs`` and the runner projects inside the loop.
    """
    steps = xs.shape[0]
    ts = t0 + jnp.arange(steps)
    seq, x_moments = xs, None
    if hoist:
        norm_x = jax.vmap(
            lambda xw, t: input_preact(
                p, xw, t, variant=variant, training=training, bn_stats=bn_stats
            )
        )
        seq, x_moments = norm_x(matmul(xs, p["w_x"]), ts)
    masks = None
    if training and dropout_rate > 0.0:
        masks = jax.vmap(lambda k: dropout_mask(k, dropout_rate, state.h.shape, state.h.dtype))(
            jax.random.split(key, steps)
        )
    valid = None
    if seq_lengths is not None:
        valid = jnp.arange(steps).reshape((steps,) + (1,) * len(xs.shape[1:-1])) < seq_lengths
    return ScanInputs(seq, ts, masks, valid), x_moments


def _gated(p, state, inputs, *, variant, training, bn_stats, project, unroll):
    del bn_stats, training, unroll  # no statistics in these variants; the custom scan never unrolls
    scales = None
    if variant == "normprop":
        scales = (p["c_scale"], p["h_scale"], p.get("g_scale"))
    w_x, b = (p["w_x"], p["b"]) if project else (None, None)
    h, c, hs = _fused.gated_scan(
        project, w_x, p["w_h"], b, scales, state.h, state.c, inputs.seq, inputs.masks, inputs.valid
    )
    return LSTMState(h=h, c=c), hs, {}


def _fused_runner(p, state, inputs, *, variant, training, bn_stats, project, unroll):
    del unroll  # the custom scan never unrolls
    names = _fused.SMALL_PARAMS + (_fused.INPUT_PARAMS if project else ())
    small = {k: p[k] for k in names}
    h, c, hs, moments = _fused.fused_scan(
        variant, training, project, p["w_x"], p["w_h"], small, bn_stats, state.h, state.c, *inputs
    )
    return LSTMState(h=h, c=c), hs, moments


def _reference(p, state, inputs, *, variant, training, bn_stats, project, unroll):
    def body(state, step):
        v, t, mask, ok = step
        u = matmul(v, p["w_x"]) if project else v
        hw = matmul(state.h, p["w_h"])
        h, c, out, moments = elementwise_step(
            variant, training, project, p, bn_stats, state.h, state.c, hw, u, t, mask, ok
        )
        return LSTMState(h=h, c=c), (out, moments)

    state, (hs, moments) = jax.lax.scan(body, state, inputs, unroll=unroll)
    return state, hs, moments


RUNNERS = {"gated": _gated, "fused": _fused_runner, "reference": _reference}


def runner_path(variant: str, fused_backward: bool) -> str:
    """The key of :data:`RUNNERS` that runs ``variant``."""
    if not fused_backward:
        return "reference"
    return "gated" if variant in GATED_VARIANTS else "fused"
