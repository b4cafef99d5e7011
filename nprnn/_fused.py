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

The input part (``x W_x``, its normalization, the bias) stays outside, hoisted before the scan,
and is differentiated by autodiff from ``dzx``; so is the weight normalization of W_h.
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


def _matmul(a, w):
    from nprnn.cells import _matmul  # cells imports this module

    return _matmul(a, w)


def _step(variant, training, small, bn_stats, h_prev, c_prev, hw, zx, t, mask, valid):
    """Element-wise part of one step; returns (h, c, output h, moments)."""
    from nprnn.cells import _cell_update  # cells imports this module

    new, moments = _cell_update(
        small, c_prev, hw, zx, t, mask, variant=variant, training=training, bn_stats=bn_stats
    )
    h, c, out = new.h, new.c, new.h
    if valid is not None:
        valid = valid[..., None]
        h = jnp.where(valid, h, h_prev)
        c = jnp.where(valid, c, c_prev)
        out = jnp.where(valid, out, jnp.zeros_like(out))
    return h, c, out, moments


def _forward(variant, training, w_h, small, bn_stats, h0, c0, zxs, ts, masks, valid):
    def body(carry, inputs):
        h_prev, c_prev = carry
        zx, t, mask, ok = inputs
        hw = _matmul(h_prev, w_h)
        h, c, out, moments = _step(
            variant, training, small, bn_stats, h_prev, c_prev, hw, zx, t, mask, ok
        )
        return (h, c), (out, moments, (h_prev, c_prev, hw))

    (h, c), (hs, moments, saved) = jax.lax.scan(body, (h0, c0), (zxs, ts, masks, valid))
    return (h, c, hs, moments), saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def fused_scan(variant, training, w_h, small, bn_stats, h0, c0, zxs, ts, masks, valid):
    """``(h_T, c_T, hs [T, ...], moments)`` of the recurrence; see the module docstring."""
    return _forward(variant, training, w_h, small, bn_stats, h0, c0, zxs, ts, masks, valid)[0]


def _fwd(variant, training, w_h, small, bn_stats, h0, c0, zxs, ts, masks, valid):
    out, saved = _forward(variant, training, w_h, small, bn_stats, h0, c0, zxs, ts, masks, valid)
    return out, (w_h, small, bn_stats, zxs, ts, masks, valid, saved)


def _bwd(variant, training, residuals, cotangents):
    w_h, small, bn_stats, zxs, ts, masks, valid, (h_prevs, c_prevs, hws) = residuals
    dh_T, dc_T, dhs, _ = cotangents  # the batch moments are not differentiated
    w_h_t = w_h.T

    def body(carry, inputs):
        dh, dc, dsmall = carry
        h_prev, c_prev, hw, zx, t, mask, ok, dh_out = inputs

        def step(small, h_prev, c_prev, hw, zx):
            h, c, out, _ = _step(
                variant, training, small, bn_stats, h_prev, c_prev, hw, zx, t, mask, ok
            )
            return h, c, out

        _, vjp = jax.vjp(step, small, h_prev, c_prev, hw, zx)
        ds, dh_direct, dc_prev, dhw, dzx = vjp((dh, dc, dh_out))
        dh_prev = dh_direct + _matmul(dhw, w_h_t)
        dsmall = jax.tree.map(jnp.add, dsmall, ds)
        return (dh_prev, dc_prev, dsmall), (dhw, dzx)

    zero_small = jax.tree.map(jnp.zeros_like, small)
    (dh0, dc0, dsmall), (dhws, dzxs) = jax.lax.scan(
        body,
        (dh_T, dc_T, zero_small),
        (h_prevs, c_prevs, hws, zxs, ts, masks, valid, dhs),
        reverse=True,
    )
    # One product with inner dimension T*B instead of T products with inner dimension B.
    md = w_h.dtype
    dw_h = jnp.einsum(
        "...h,...g->hg", h_prevs.astype(md), dhws.astype(md), preferred_element_type=dhws.dtype
    ).astype(md)
    dbn = jax.tree.map(jnp.zeros_like, bn_stats)
    return dw_h, dsmall, dbn, dh0, dc0, dzxs, None, None, None


fused_scan.defvjp(_fwd, _bwd)
