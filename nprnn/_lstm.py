"""The LSTM maths every other core module shares; a leaf (imports only ``nprnn._validate``).

Shapes use T (time), B (batch), D (input), H (hidden). Gates are fused along the last axis in the
paper's order i, f, o, g; weights multiply as ``x @ W`` ([in, 4H]). What is here:

* the variant list and its check, the state type and its check, the normalization epsilon;
* the pieces of one step: the mixed-precision product, the once-per-sequence preparation of the
  weights (weight normalization folded into them, eq. 13; normprop's output scales, eq. 15), layer
  and batch normalization, the input part of the pre-activations, the cell update (eq. 14-15) and
  the element-wise step that the scans and the reference path run;
* the per-gate orthogonal initializer and the column norm, which initialization, the variance
  constants and the weight normalization all use.

The public functions of the package (``nprnn.lstm_step``, ``nprnn.run_sequence``,
``nprnn.init_params``, ...) live above this module and document the variants' equations; the
names here are public within the package, as in equinox's ``nn/_misc.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nprnn._validate import one_of

__all__ = [
    "COMPENSATIONS",
    "GATED_VARIANTS",
    "LSTMState",
    "NORM_EPSILON",
    "VARIANTS",
    "batch_norm",
    "cell_update",
    "check_state",
    "check_variant",
    "column_norm",
    "compensation_of",
    "dropout_mask",
    "elementwise_step",
    "input_preact",
    "layer_norm",
    "matmul",
    "orthogonal_gates",
    "prepare",
    "skip_padded",
]

VARIANTS = ("lstm", "weightnorm", "layernorm", "batchnorm", "normprop")
# The variants without statistics inside the step (closed-form backward in nprnn._fused).
GATED_VARIANTS = ("lstm", "weightnorm", "normprop")

NORM_EPSILON = 1e-5

# The Normalized LSTM's two forms, by the frozen constants that define them (see ``prepare``):
# "paper", eq. 14-15 as printed; "released", the authors' DRAW code (``Thrandis/draw``).
COMPENSATIONS = {"paper": ("var_c", "var_h"), "released": ("s_h", "s_c")}


class LSTMState(NamedTuple):
    """The recurrent state of one LSTM layer.

    Attributes:
        h: hidden state (the output), [B, H] (or [H] for a single unbatched example).
        c: cell, same shape as ``h``.
    """

    h: jax.Array
    c: jax.Array


def check_variant(variant: str) -> str:
    """Returns ``variant`` if it is one of :data:`VARIANTS`, else raises a ``ValueError``."""
    return one_of("LSTM variant", variant, VARIANTS)


def check_state(state) -> LSTMState:
    """Returns ``state`` if it is an :class:`LSTMState`, else raises a ``TypeError``.

    A plain tuple is refused: its order is ambiguous (Flax's LSTM carry is ``(c, h)``, ours is
    ``(h, c)``), and reading one with h and c swapped would fail silently.
    """
    if not isinstance(state, LSTMState):
        raise TypeError(
            f"state must be an LSTMState(h, c), got {type(state).__name__}. A plain tuple is "
            "refused because its order is ambiguous: Flax's LSTM carry is (c, h). Build one with "
            "nprnn.LSTMState(h=h, c=c), or nprnn.init_state(batch_size, hidden_size) for zeros."
        )
    return state


def compensation_of(consts) -> str | None:
    """The normprop form whose constants ``consts`` holds (a key of :data:`COMPENSATIONS`)."""
    for name, keys in COMPENSATIONS.items():
        if set(keys) <= set(consts or {}):
            return name
    return None


def column_norm(w: jax.Array) -> jax.Array:
    """L2 norm of every unit's incoming weight vector: the columns of a [in, 4H] matrix."""
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=0))


def orthogonal_gates(key: jax.Array, rows: int, hidden_size: int, dtype) -> jax.Array:
    """[rows, 4H]: an independent random (semi-)orthogonal [rows, H] block per gate."""
    init = jax.nn.initializers.orthogonal()
    blocks = [init(k, (rows, hidden_size), dtype) for k in jax.random.split(key, 4)]
    return jnp.concatenate(blocks, axis=-1)


def matmul(a: jax.Array, w: jax.Array) -> jax.Array:
    """``a @ w``; with low-precision weights (mixed precision), ``a`` is cast to their dtype and
    the product accumulates and returns in ``a``'s dtype."""
    if a.dtype == w.dtype:
        return a @ w
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=a.dtype)


def prepare(params: dict, consts: dict, variant: str, matmul_dtype=None) -> dict:
    """Everything of a layer that does not depend on the time step (done once per sequence).

    weightnorm, normprop: ``gamma * (x W / ||W||) == x (W * gamma / ||W||)``, so the scale is
    folded into the weights (eq. 13). normprop's cell and output are
    ``c_t = sigma(i~) * tanh(g~) * g_scale + sigma(f~) * c_{t-1}`` and
    ``h_t = sigma(o~) * tanh(c_scale * c_t) * h_scale`` with, by the form of ``consts``:

    * ``"paper"`` (eq. 14-15): ``c_scale = gamma_c / sqrt(var_c)``, ``h_scale = 1 / sqrt(var_h)``
      and no ``g_scale`` (1);
    * ``"released"`` (the authors' code): ``g_scale = 1 / s_h``, ``c_scale = gamma_c``,
      ``h_scale = 1 / s_c``.

    With ``matmul_dtype`` the two weight matrices are cast to it after the normalization.
    """
    p = dict(params)
    if variant in ("weightnorm", "normprop"):
        p["w_x"] = params["w_x"] * (params["gamma_x"] / column_norm(params["w_x"]))
        p["w_h"] = params["w_h"] * (params["gamma_h"] / column_norm(params["w_h"]))
    if variant == "normprop" and compensation_of(consts) == "released":
        p["g_scale"] = 1.0 / consts["s_h"]
        p["c_scale"] = params["gamma_c"]
        p["h_scale"] = 1.0 / consts["s_c"]
    elif variant == "normprop":
        p["c_scale"] = params["gamma_c"] * jax.lax.rsqrt(consts["var_c"])
        p["h_scale"] = jax.lax.rsqrt(consts["var_h"])
    if matmul_dtype is not None:
        p["w_x"] = p["w_x"].astype(matmul_dtype)
        p["w_h"] = p["w_h"].astype(matmul_dtype)
    return p


def layer_norm(a: jax.Array) -> jax.Array:
    """Standardizes each example over its last (feature) axis."""
    mean = jnp.mean(a, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(a - mean), axis=-1, keepdims=True)
    return (a - mean) * jax.lax.rsqrt(var + NORM_EPSILON)


def batch_norm(a: jax.Array, which: str, t, training: bool, bn_stats):
    """Standardizes [B, F] over the batch; returns the result and the moments used.

    In training the batch's own moments; at inference row ``min(t, T_max - 1)`` of the population
    statistics ``bn_stats[which]``.
    """
    if training:
        mean = jnp.mean(a, axis=0)
        var = jnp.mean(jnp.square(a - mean), axis=0)
    else:
        stats = bn_stats[which]
        row = jnp.minimum(t, stats["mean"].shape[0] - 1)
        mean, var = stats["mean"][row], stats["var"][row]
    return (a - mean) * jax.lax.rsqrt(var + NORM_EPSILON), {"mean": mean, "var": var}


def input_preact(p: dict, xw: jax.Array, t, *, variant: str, training: bool, bn_stats):
    """The input part of eq. 13 (bias included), from ``xw = x @ p['w_x']``; with its moments."""
    if variant == "layernorm":
        return layer_norm(xw) * p["gamma_x"] + p["b"], None
    if variant == "batchnorm":
        xn, moments = batch_norm(xw, "x", t, training, bn_stats)
        return xn * p["gamma_x"] + p["b"], moments
    return xw + p["b"], None


def cell_update(p: dict, c_prev, hw, zx, t, mask, *, variant: str, training: bool, bn_stats):
    """Eq. 13-15 after the recurrent product ``hw = h_{t-1} @ p['w_h']``, given the input part
    ``zx``; returns the new ``LSTMState`` and the batch moments of the step."""
    moments = {}
    if variant == "layernorm":
        hw = layer_norm(hw) * p["gamma_h"]
    elif variant == "batchnorm":
        hw, moments["h"] = batch_norm(hw, "h", t, training, bn_stats)
        hw = hw * p["gamma_h"]
    i, f, o, g = jnp.split(zx + hw, 4, axis=-1)
    g = jnp.tanh(g)
    if mask is not None:
        g = g * mask
    if "g_scale" in p:
        g = g * p["g_scale"]
    c = jax.nn.sigmoid(i) * g + jax.nn.sigmoid(f) * c_prev
    if variant == "normprop":
        out = jnp.tanh(c * p["c_scale"]) * p["h_scale"]
    elif variant == "layernorm":
        out = jnp.tanh(layer_norm(c) * p["gamma_c"] + p["beta_c"])
    elif variant == "batchnorm":
        cn, moments["c"] = batch_norm(c, "c", t, training, bn_stats)
        out = jnp.tanh(cn * p["gamma_c"] + p["beta_c"])
    else:
        out = jnp.tanh(c)
    h = jax.nn.sigmoid(o) * out
    return LSTMState(h=h, c=c), moments


def dropout_mask(key, rate: float, shape, dtype):
    """Inverted-dropout mask (kept entries scaled by ``1 / (1 - rate)``), or None when off."""
    if key is None or rate == 0.0:
        return None
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / (1.0 - rate)


def skip_padded(valid, h, c, h_prev, c_prev):
    """``(h, c, output)`` of a step: at padded positions (``valid`` False) the state is carried
    through unchanged and the output is zero."""
    if valid is None:
        return h, c, h
    valid = valid[..., None]
    return (
        jnp.where(valid, h, h_prev),
        jnp.where(valid, c, c_prev),
        jnp.where(valid, h, jnp.zeros_like(h)),
    )


def elementwise_step(variant, training, project, p, bn_stats, h_prev, c_prev, hw, u, t, mask, ok):
    """Everything of one step but its products; returns ``(h, c, output h, moments)``.

    ``u`` is the input part of the pre-activations (``project=False``) or the raw input product
    ``x_t @ W_x`` (``project=True``: normalized and biased here, its moments under ``"x"``).
    ``ok`` marks the valid (unpadded) examples of the step, or is None.
    """
    x_moments = None
    if project:
        u, x_moments = input_preact(p, u, t, variant=variant, training=training, bn_stats=bn_stats)
    new, moments = cell_update(
        p, c_prev, hw, u, t, mask, variant=variant, training=training, bn_stats=bn_stats
    )
    if project and x_moments is not None:
        moments["x"] = x_moments
    h, c, out = skip_padded(ok, new.h, new.c, h_prev, c_prev)
    return h, c, out, moments
