"""Two scans of a layer with hand-written backward passes (``jax.custom_vjp``); imports nprnn._lstm.

Autodiff of ``lax.scan`` accumulates the recurrent weight gradient inside the backward scan,
``dW_h += h_{t-1}^T dz_t`` at every step: T small matrix products with an inner dimension of B.
Fused LSTM kernels (cuDNN, oneDNN) instead keep the per-step pre-activation gradients and compute
``dW_h = sum_t h_{t-1}^T dz_t`` as ONE product with inner dimension T*B after the backward
recurrence. This module does the same, in two forms:

* ``gated_scan`` (lstm, weightnorm, normprop: no statistics inside the step). The forward saves
  the gate activations and ``c_{t-1}`` of every step, as fused kernels keep them in their
  workspace; the backward step is the LSTM's derivative in closed form (a few multiplies, no
  recomputed sigmoid of the gates) and one product ``dh_{t-1} = dz_t W_h^T``.
* ``fused_scan`` (layernorm, batchnorm: statistics inside the step). The forward saves ``h_{t-1}``,
  ``c_{t-1}`` and ``hw_t = h_{t-1} W_h``; the backward recomputes the element-wise part of each
  step from them (``jax.vjp`` of ``_lstm.elementwise_step``: no matrix product), which covers the
  per-step normalizations and their statistics.

Both then compute ``dW_h`` as one product. The input part (``x W_x``, its normalization, the bias)
is either hoisted before the scan and differentiated by autodiff from the input gradients, or
(``project=True``) computed inside the loop, and then ``dW_x = sum_t x_t^T du_t`` and
``dx = du W_x^T`` are one product each after the backward scan. The weight normalization stays
outside, differentiated by autodiff. The numbers equal the autodiff path up to float rounding
(tested in float64).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nprnn._lstm import elementwise_step, matmul, skip_padded

# Entries of the prepared params that the element-wise part of a layernorm / batchnorm step
# reads (``fused_scan``) ...
SMALL_PARAMS = ("gamma_h", "gamma_c", "beta_c")
# ... and, when the input projection is done inside the loop, the input part reads these too.
INPUT_PARAMS = ("b", "gamma_x")


def _forward(variant, training, project, w_x, w_h, small, bn_stats, h0, c0, seq, ts, masks, valid):
    def body(carry, inputs):
        h_prev, c_prev = carry
        v, t, mask, ok = inputs
        u = matmul(v, w_x) if project else v
        hw = matmul(h_prev, w_h)
        h, c, out, moments = elementwise_step(
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


def _flat_outer(a, b, dtype, cast=True):
    """``sum over all leading axes of a^T b`` as one 2-D product (XLA:CPU runs it faster than
    the equivalent einsum over two contracting axes) of operands in ``dtype``, accumulated in
    ``b``'s dtype and returned in ``dtype`` (``cast=False``: in the accumulation dtype)."""
    a2 = a.reshape(-1, a.shape[-1]).astype(dtype)
    b2 = b.reshape(-1, b.shape[-1]).astype(dtype)
    out = jnp.matmul(a2.T, b2, preferred_element_type=b.dtype)
    return out.astype(dtype) if cast else out


def _sum_to(x, shape):
    """Sums ``x`` over its leading axes down to ``shape`` (a broadcast parameter's gradient)."""
    x = x.reshape(-1, x.shape[-1]).sum(axis=0)
    return x.sum() if shape == () else x


def _bwd(variant, training, project, residuals, cotangents):
    w_x, w_h, small, bn_stats, seq, ts, masks, valid, (h_prevs, c_prevs, hws, us) = residuals
    dh_T, dc_T, dhs, _ = cotangents  # the batch moments are not differentiated
    w_h_t = w_h.T

    def body(carry, inputs):
        dh, dc, dsmall, dbn = carry
        h_prev, c_prev, hw, u, t, mask, ok, dh_out = inputs

        def step(small, bn_stats, h_prev, c_prev, hw, u):
            h, c, out, _ = elementwise_step(
                variant, training, project, small, bn_stats, h_prev, c_prev, hw, u, t, mask, ok
            )
            return h, c, out

        _, vjp = jax.vjp(step, small, bn_stats, h_prev, c_prev, hw, u)
        ds, dstats, dh_direct, dc_prev, dhw, du = vjp((dh, dc, dh_out))
        dh_prev = dh_direct + matmul(dhw, w_h_t)
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
    dw_h = _flat_outer(h_prevs, dhws, w_h.dtype)
    if project:
        dw_x = _flat_outer(seq, dus, w_x.dtype)
        dseq = matmul(dus, w_x.T)
    else:
        dw_x, dseq = jnp.zeros_like(w_x), dus
    return dw_x, dw_h, dsmall, dbn, dh0, dc0, dseq, None, None, None


fused_scan.defvjp(_fwd, _bwd)


# ----------------------------------------------------------------------------------------------
# The statistics-free variants in closed form (see the module docstring).


def _gated_forward(project, w_x, w_h, b, scales, h0, c0, seq, masks, valid):
    hidden = h0.shape[-1]

    def body(carry, inputs):
        h_prev, c_prev = carry
        v, mask, ok = inputs
        zx = matmul(v, w_x) + b if project else v
        z = zx + matmul(h_prev, w_h)  # the order of the reference path: same rounding
        acts = jnp.concatenate(  # i, f, o, g
            [jax.nn.sigmoid(z[..., : 3 * hidden]), jnp.tanh(z[..., 3 * hidden :])], axis=-1
        )
        i, f, o, g = jnp.split(acts, 4, axis=-1)
        gm = g if mask is None else g * mask
        if scales is not None and scales[2] is not None:
            gm = gm * scales[2]
        c = i * gm + f * c_prev
        if scales is None:
            h = o * jnp.tanh(c)
        else:
            c_scale, h_scale, _ = scales
            h = o * (jnp.tanh(c * c_scale) * h_scale)
        h, c, out = skip_padded(ok, h, c, h_prev, c_prev)
        return (h, c), (out, (c_prev, acts))

    (h, c), (hs, saved) = jax.lax.scan(body, (h0, c0), (seq, masks, valid))
    return (h, c, hs), saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def gated_scan(project, w_x, w_h, b, scales, h0, c0, seq, masks, valid):
    """``(h_T, c_T, hs [T, ...])`` of an lstm / weightnorm / normprop layer.

    ``seq`` is the input part ``x W_x + b`` of every step ([T, ..., 4H]; ``project=False``,
    ``w_x`` and ``b`` are then None) or the inputs ([T, ..., D]; ``project=True``: ``x_t W_x + b``
    in the loop). ``scales`` is normprop's ``(c_scale, h_scale, g_scale)`` (``g_scale`` None in
    the paper's form; see ``nprnn._lstm.prepare``), None otherwise.
    """
    return _gated_forward(project, w_x, w_h, b, scales, h0, c0, seq, masks, valid)[0]


def _gated_fwd(project, w_x, w_h, b, scales, h0, c0, seq, masks, valid):
    out, saved = _gated_forward(project, w_x, w_h, b, scales, h0, c0, seq, masks, valid)
    return out, (w_x, w_h, b, scales, h0, seq, masks, valid, out[2], saved)


def _gated_bwd(project, residuals, cotangents):
    w_x, w_h, b, scales, h0, seq, masks, valid, hs, (c_prevs, acts) = residuals
    dh_T, dc_T, dhs = cotangents
    w_h_t = w_h.T
    zero_scales = None if scales is None else jax.tree.map(jnp.zeros_like, scales)

    def body(carry, inputs):
        dh, dc, dscales = carry
        c_prev, acts, mask, ok, dh_out = inputs
        if ok is not None:  # a padded step passes the state's gradients through unchanged
            ok = ok[..., None]
            dh_skip = jnp.where(ok, jnp.zeros_like(dh), dh)
            dc_skip = jnp.where(ok, jnp.zeros_like(dc), dc)
            dh = jnp.where(ok, dh + dh_out, jnp.zeros_like(dh))
            dc = jnp.where(ok, dc, jnp.zeros_like(dc))
        else:
            dh = dh + dh_out
        i, f, o, g = jnp.split(acts, 4, axis=-1)
        g_scale = None if scales is None else scales[2]
        gd = g if mask is None else g * mask  # the candidate after dropout
        gm = gd if g_scale is None else gd * g_scale
        c = i * gm + f * c_prev
        dtanh = dh * o  # the gradient w.r.t. the cell's output
        if scales is None:
            a = jnp.tanh(c)
            do = dh * a
            dc = dc + dtanh * (1.0 - a * a)
        else:
            c_scale, h_scale, _ = scales
            a = jnp.tanh(c * c_scale)
            do = dh * (a * h_scale)
            dpre = dtanh * h_scale * (1.0 - a * a)
            dscales = (
                dscales[0] + _sum_to(dpre * c, c_scale.shape),
                dscales[1] + _sum_to(dtanh * a, h_scale.shape),
                dscales[2],
            )
            dc = dc + dpre * c_scale
        dgm = dc * i
        if g_scale is not None:
            dscales = (*dscales[:2], dscales[2] + _sum_to(dgm * gd, g_scale.shape))
            dgm = dgm * g_scale
        dg = dgm if mask is None else dgm * mask
        dz = jnp.concatenate(
            [
                dc * gm * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                do * o * (1.0 - o),
                dg * (1.0 - g * g),
            ],
            axis=-1,
        )
        dh_prev = matmul(dz, w_h_t)
        dc_prev = dc * f
        if ok is not None:
            dh_prev = dh_prev + dh_skip
            dc_prev = dc_prev + dc_skip
        return (dh_prev, dc_prev, dscales), dz

    (dh0, dc0, dscales), dzs = jax.lax.scan(
        body,
        (dh_T, dc_T, zero_scales),
        (c_prevs, acts, masks, valid, dhs),
        reverse=True,
    )
    # One product with inner dimension T*B for each weight gradient. h_{t-1} is the output of
    # step t - 1 (h0 at t = 0) wherever dz_t is non-zero: padding only ever follows the valid
    # steps, and a padded step has dz_t = 0.
    dw_h = (
        _flat_outer(hs[:-1], dzs[1:], w_h.dtype, cast=False)
        + _flat_outer(h0, dzs[0], w_h.dtype, cast=False)
    ).astype(w_h.dtype)  # summed before the cast: one rounding under mixed precision
    if project:
        dw_x = _flat_outer(seq, dzs, w_x.dtype)
        db = _sum_to(dzs, b.shape)
        dseq = matmul(dzs, w_x.T)
    else:
        dw_x, db, dseq = None, None, dzs
    return dw_x, dw_h, db, dscales, dh0, dc0, dseq, None, None


gated_scan.defvjp(_gated_fwd, _gated_bwd)
