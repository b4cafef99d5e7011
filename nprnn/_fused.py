"""The recurrence of ``run_sequence`` with a hand-written backward pass (``jax.custom_vjp``).

Autodiff of ``lax.scan`` accumulates the recurrent weight gradient inside the backward scan,
``dW_h += h_{t-1}^T dz_t`` at every step: T small matrix products with an inner dimension of B.
Fused LSTM kernels (cuDNN, oneDNN) instead keep the per-step pre-activation gradients and compute
``dW_h = sum_t h_{t-1}^T dz_t`` as ONE product with inner dimension T*B after the backward
recurrence. This module does the same for every variant:

* forward: the same scan as the reference path, which also saves ``h_{t-1}``, ``c_{t-1}`` and
  ``hw_t = h_{t-1} W_h`` for every step;
* backward: a reverse scan that, per step, recomputes the element-wise part of the step from the
  saved values (``jax.vjp`` of ``cells._cell_update``: no matrix product), propagates
  ``dh_{t-1} = dhw_t W_h^T``, and emits ``dhw_t`` and ``dzx_t``; then one product gives ``dW_h``.

The input part (``x W_x``, its normalization, the bias) is either hoisted before the scan and
differentiated by autodiff from ``dzx``, or (``project=True``) computed inside the loop, and then
``dW_x = sum_t x_t^T du_t`` and ``dx = du W_x^T`` are one product each after the backward scan.
The weight normalization stays outside, differentiated by autodiff.
The numbers equal the autodiff path up to float rounding (tested in float64).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Entries of the prepared params that the element-wise part of a step reads.
SMALL_PARAMS = {
    "lstm": (),
    "weightnorm": (),
    "normprop": ("c_scale", "h_scale"),
    "layernorm": ("gamma_h", "gamma_c", "beta_c"),
    "batchnorm": ("gamma_h", "gamma_c", "beta_c"),
}
# ... and, when the input projection is done inside the loop, the input part reads these too.
INPUT_PARAMS = {
    "lstm": ("b",),
    "weightnorm": ("b",),
    "normprop": ("b",),
    "layernorm": ("b", "gamma_x"),
    "batchnorm": ("b", "gamma_x"),
}


def _matmul(a, w):
    from nprnn.cells import _matmul  # cells imports this module

    return _matmul(a, w)


def _step(variant, training, project, small, bn_stats, h_prev, c_prev, hw, u, t, mask, valid):
    """Element-wise part of one step; returns (h, c, output h, moments).

    ``u`` is the input part of the pre-activations (``project=False``) or the raw input product
    ``x_t @ W_x`` (``project=True``, then normalized and biased here).
    """
    from nprnn.cells import _cell_update, _input_preact  # cells imports this module

    x_moments = None
    if project:
        u, x_moments = _input_preact(
            small, u, t, variant=variant, training=training, bn_stats=bn_stats
        )
    new, moments = _cell_update(
        small, c_prev, hw, u, t, mask, variant=variant, training=training, bn_stats=bn_stats
    )
    if project and x_moments is not None:
        moments["x"] = x_moments
    h, c, out = new.h, new.c, new.h
    if valid is not None:
        valid = valid[..., None]
        h = jnp.where(valid, h, h_prev)
        c = jnp.where(valid, c, c_prev)
        out = jnp.where(valid, out, jnp.zeros_like(out))
    return h, c, out, moments


def _forward(variant, training, project, w_x, w_h, small, bn_stats, h0, c0, seq, ts, masks, valid):
    def body(carry, inputs):
        h_prev, c_prev = carry
        v, t, mask, ok = inputs
        u = _matmul(v, w_x) if project else v
        hw = _matmul(h_prev, w_h)
        h, c, out, moments = _step(
            variant, training, project, small, bn_stats, h_prev, c_prev, hw, u, t, mask, ok
        )
        return (h, c), (out, moments, (h_prev, c_prev, hw, u))

    (h, c), (hs, moments, saved) = jax.lax.scan(body, (h0, c0), (seq, ts, masks, valid))
    return (h, c, hs, moments), saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def fused_scan(
    variant, training, project, w_x, w_h, small, bn_stats, h0, c0, seq, ts, masks, valid
):
    """``(h_T, c_T, hs [T, ...], moments)`` of the recurrence; see the module docstring.

    ``seq`` is the input part ``zxs`` [T, ..., 4H] (``project=False``; ``w_x`` unused) or the
    inputs ``xs`` [T, ..., D] (``project=True``: ``x_t @ w_x`` inside the loop).
    """
    args = (w_x, w_h, small, bn_stats, h0, c0, seq, ts, masks, valid)
    return _forward(variant, training, project, *args)[0]


def _fwd(variant, training, project, w_x, w_h, small, bn_stats, h0, c0, seq, ts, masks, valid):
    args = (w_x, w_h, small, bn_stats, h0, c0, seq, ts, masks, valid)
    out, saved = _forward(variant, training, project, *args)
    return out, (w_x, w_h, small, bn_stats, seq, ts, masks, valid, saved)


def _outer(a, b, dtype):
    """sum over all leading axes of a^T b as one product, in ``dtype`` with float32-or-better
    accumulation (mixed precision)."""
    return jnp.einsum(
        "...i,...j->ij", a.astype(dtype), b.astype(dtype), preferred_element_type=b.dtype
    ).astype(dtype)


def _bwd(variant, training, project, residuals, cotangents):
    w_x, w_h, small, bn_stats, seq, ts, masks, valid, (h_prevs, c_prevs, hws, us) = residuals
    dh_T, dc_T, dhs, _ = cotangents  # the batch moments are not differentiated
    w_h_t = w_h.T

    def body(carry, inputs):
        dh, dc, dsmall, dbn = carry
        h_prev, c_prev, hw, u, t, mask, ok, dh_out = inputs

        def step(small, bn_stats, h_prev, c_prev, hw, u):
            h, c, out, _ = _step(
                variant, training, project, small, bn_stats, h_prev, c_prev, hw, u, t, mask, ok
            )
            return h, c, out

        _, vjp = jax.vjp(step, small, bn_stats, h_prev, c_prev, hw, u)
        ds, dstats, dh_direct, dc_prev, dhw, du = vjp((dh, dc, dh_out))
        dh_prev = dh_direct + _matmul(dhw, w_h_t)
        dsmall = jax.tree.map(jnp.add, dsmall, ds)
        dbn = jax.tree.map(jnp.add, dbn, dstats)  # population statistics (batchnorm inference)
        return (dh_prev, dc_prev, dsmall, dbn), (dhw, du)

    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    (dh0, dc0, dsmall, dbn), (dhws, dus) = jax.lax.scan(
        body,
        (dh_T, dc_T, zeros(small), zeros(bn_stats)),
        (h_prevs, c_prevs, hws, us, ts, masks, valid, dhs),
        reverse=True,
    )
    # One product with inner dimension T*B instead of T products with inner dimension B.
    dw_h = _outer(h_prevs, dhws, w_h.dtype)
    if project:
        dw_x = _outer(seq, dus, w_x.dtype)
        dseq = _matmul(dus, w_x.T)
    else:
        dw_x, dseq = jnp.zeros_like(w_x), dus
    return dw_x, dw_h, dsmall, dbn, dh0, dc0, dseq, None, None, None


fused_scan.defvjp(_fwd, _bwd)
