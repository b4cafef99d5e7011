"""DRAW's attention: Gaussian filterbanks and the read and write operations (Gregor et al.
2015); imports nprnn._lstm.

Pure JAX functions of a decoder state and the weights of a linear layer, used by
:mod:`nprnn.models.draw`; nothing here depends on the LSTM variant. Images are [B, D] with
D = height * width, flattened row-major; N is the side of an attention patch. A layer is a dict
``{"w": [in, out], "b": [out]}`` applied as ``x @ w + b``, or a weight-normalized one with a
``"gamma"`` [out] as well (:func:`linear`).

May import from nprnn: ``nprnn._lstm`` (the column norm).

References:
    K. Gregor, I. Danihelka, A. Graves, D. J. Rezende, D. Wierstra, "DRAW: A Recurrent
    Neural Network For Image Generation", ICML 2015 (arXiv:1502.04623), eq. 19-29.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from nprnn._lstm import column_norm

__all__ = [
    "FILTERBANK_EPS",
    "NUM_ATTENTION_PARAMS",
    "attention_params",
    "attention_record",
    "filterbank",
    "linear",
    "read",
    "tiling_bias",
    "write",
]

#: Added to the sum of every filterbank row before dividing by it, so that a row whose
#: Gaussian lies entirely off the image (all its values underflow to 0) becomes a row of
#: zeros instead of NaN. Gregor et al. only say "normalisation constant"; 1e-8 is the
#: value used by common open-source DRAW implementations, and is negligible for any row
#: that covers the image (the row sums of a Gaussian on the pixel grid are then >= ~1).
FILTERBANK_EPS = 1e-8

#: Number of attention parameters emitted by each attention layer:
#: (g~_X, g~_Y, log sigma^2, log delta~, log gamma), in that order.
NUM_ATTENTION_PARAMS = 5

Params = dict[str, Any]


def tiling_bias(n: int, *, height: int, width: int, write: bool) -> jax.Array:
    """Bias of an attention layer whose window, at zero input, tiles the whole image.

    With this bias and ``h W = 0`` the N x N grid sits at the image centre with stride
    ``delta_0 = max(A, B) / N`` (N cells of equal size across the image, a filter at the
    centre of each) and filter variance ``sigma_0^2 = (delta_0 / 2)^2``, so that neighbouring
    filters overlap and every pixel of the image is covered. The write intensity is
    ``1 / gamma^ = 2 pi sigma_0^2``, which undoes the filters' normalization: each row of a
    filterbank sums to 1, so without it an entry of w adds only ``1 / (2 pi sigma^2)`` to the
    canvas logit at its filter's centre. The read intensity is 1 (a read is then a weighted
    average of pixels).

    Why not zero: with a zero bias (``delta~ = sigma^2 = gamma = 1``, the value Gregor et al.'s
    parameterization gives to a zero pre-activation, and what a zero-initialized bias gives in
    the authors' released code) the grid spans the image with point-like filters (sigma = 1,
    stride (max(A, B) - 1) / (N - 1)): for the read N = 2 the four filters sit on the corner
    pixels, which are 0 in every binarized-MNIST image, so the encoder sees nothing of the
    image and z carries no information; the write lays 25 isolated dots whose logits change by
    a sixth of w. The model then fits the mean image (about 208 nats) and the KL term shuts the
    encoder off before the attention has learned to move; see the ``attention_init`` argument
    of `nprnn.models.draw_params.init_draw`.

    Args:
        n: N, side of the patch (>= 2).
        height: image height (the paper's B).
        width: image width (the paper's A).
        write: True for a write attention (intensity ``2 pi sigma_0^2``), False for a read.

    Returns:
        [5] float32: ``(g~_X, g~_Y, log sigma^2, log delta~, log gamma)``, the order of
        `attention_params`.
    """
    size = max(height, width)
    stride = size / n
    sigma2 = (stride / 2) ** 2
    log_delta_t = math.log(stride * (n - 1) / (size - 1))
    log_gamma = -math.log(2 * math.pi * sigma2) if write else 0.0
    return jnp.asarray([0.0, 0.0, math.log(sigma2), log_delta_t, log_gamma], jnp.float32)


def linear(layer: Params, x: jax.Array) -> jax.Array:
    """``x @ w + b`` for a layer ``{"w": [in, out], "b": [out]}``.

    A weight-normalized layer (Salimans & Kingma 2016; the released DRAW code of Laurent et al.)
    also has ``"gamma"`` [out] and computes ``gamma * (x @ w / ||w||) + b``, with ``||w||`` the
    L2 norm of each output unit's incoming weights (a column of ``w``).
    """
    if "gamma" in layer:
        return x @ (layer["w"] * (layer["gamma"] / column_norm(layer["w"]))) + layer["b"]
    return x @ layer["w"] + layer["b"]


def attention_params(
    h: jax.Array, layer: Params, *, n: int, height: int, width: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Attention parameters from the decoder state (Gregor et al. eq. 21-24).

    ``(g~_X, g~_Y, log sigma^2, log delta~, log gamma) = h W + b`` and::

        g_X   = (A + 1) / 2 * (g~_X + 1)
        g_Y   = (B + 1) / 2 * (g~_Y + 1)
        delta = (max(A, B) - 1) / (N - 1) * delta~

    with A = width and B = height.

    Args:
        h: [B, H] decoder state h^dec.
        layer: ``{"w": [H, 5], "b": [5]}``.
        n: N, side of the patch.
        height: image height (the paper's B).
        width: image width (the paper's A).

    Returns:
        ``(g_x, g_y, sigma2, delta, gamma)``, each [B]: grid centre (1-based pixel
        coordinates), isotropic filter variance sigma^2, stride and intensity gamma.
    """
    out = linear(layer, h)
    gx_t, gy_t, log_sigma2, log_delta_t, log_gamma = (out[..., k] for k in range(5))
    g_x = (width + 1) / 2 * (gx_t + 1)
    g_y = (height + 1) / 2 * (gy_t + 1)
    delta = (max(width, height) - 1) / (n - 1) * jnp.exp(log_delta_t)
    return g_x, g_y, jnp.exp(log_sigma2), delta, jnp.exp(log_gamma)


def attention_record(h: jax.Array, layer: Params, *, n: int, height: int, width: int) -> jax.Array:
    """[B, 5] attention parameters (g_X, g_Y, sigma^2, delta, gamma) stacked, for figures."""
    values = attention_params(h, layer, n=n, height=height, width=width)
    return jnp.stack(values, axis=-1)


def _filters(centre: jax.Array, delta: jax.Array, sigma2: jax.Array, n: int, size: int):
    """[B, N, size] Gaussian filterbank along one axis, each row summing to ~1."""
    dtype = jnp.result_type(centre, delta, sigma2)
    offsets = jnp.arange(1, n + 1, dtype=dtype) - n / 2 - 0.5  # i - N/2 - 0.5, i = 1..N
    mu = centre[..., None] + offsets * delta[..., None]  # [B, N]
    coords = jnp.arange(1, size + 1, dtype=dtype)  # a = 1..size
    f = jnp.exp(-jnp.square(coords - mu[..., None]) / (2 * sigma2[..., None, None]))
    return f / (jnp.sum(f, axis=-1, keepdims=True) + FILTERBANK_EPS)


def filterbank(
    g_x: jax.Array,
    g_y: jax.Array,
    sigma2: jax.Array,
    delta: jax.Array,
    *,
    n: int,
    height: int,
    width: int,
) -> tuple[jax.Array, jax.Array]:
    """Horizontal and vertical Gaussian filterbanks (Gregor et al. eq. 19-20, 25-26).

    With filter means ``mu_X^i = g_X + (i - N/2 - 0.5) * delta`` (likewise for Y),
    i = 1..N::

        F_X[i, a] = exp(-(a - mu_X^i)^2 / (2 sigma^2)) / (Z_X^i + eps)
        F_Y[j, b] = exp(-(b - mu_Y^j)^2 / (2 sigma^2)) / (Z_Y^j + eps)

    where Z is the row sum and eps = `FILTERBANK_EPS`.

    Notes:
        Pixel coordinates a, b are 1-based (a = 1..A). Neither paper states the base;
        with 1-based coordinates g~ = 0 puts the grid at the exact image centre
        (A + 1) / 2, as the scaling of g_X is designed to do, and the filter means are
        symmetric about the centre.

    Args:
        g_x: [B] grid centre along x (columns).
        g_y: [B] grid centre along y (rows).
        sigma2: [B] filter variance.
        delta: [B] stride.
        n: N, side of the patch.
        height: image height (the paper's B).
        width: image width (the paper's A).

    Returns:
        ``(f_x, f_y)`` of shapes [B, N, width] and [B, N, height].
    """
    f_x = _filters(g_x, delta, sigma2, n, width)
    f_y = _filters(g_y, delta, sigma2, n, height)
    return f_x, f_y


def read(
    x: jax.Array,
    x_hat: jax.Array,
    h_dec: jax.Array,
    layer: Params,
    *,
    n: int,
    height: int,
    width: int,
) -> jax.Array:
    """Read with attention (Gregor et al. eq. 27).

    ``read(x, x^, h^dec) = gamma * [F_Y x F_X^T, F_Y x^ F_X^T]``, two N x N patches
    flattened row-major (y then x) and concatenated.

    Args:
        x: [B, D] images, D = height * width, row-major.
        x_hat: [B, D] error images.
        h_dec: [B, H] previous decoder state.
        layer: attention layer ``{"w": [H, 5], "b": [5]}``.
        n: N, side of the patches.
        height: image height.
        width: image width.

    Returns:
        [B, 2 N^2] glimpse r_t.
    """
    g_x, g_y, sigma2, delta, gamma = attention_params(h_dec, layer, n=n, height=height, width=width)
    f_x, f_y = filterbank(g_x, g_y, sigma2, delta, n=n, height=height, width=width)
    images = jnp.stack([x, x_hat], axis=1).reshape(x.shape[0], 2, height, width)
    patches = jnp.einsum("bih,bkhw,bjw->bkij", f_y, images, f_x)  # [B, 2, N, N]
    return gamma[:, None] * patches.reshape(x.shape[0], 2 * n * n)


def write(
    h_dec: jax.Array,
    patch_layer: Params,
    attention_layer: Params,
    *,
    n: int,
    height: int,
    width: int,
) -> jax.Array:
    """Write with attention (Gregor et al. eq. 28-29).

    ``w_t = h^dec_t W + b`` (an N x N patch, row-major) and
    ``write(h^dec_t) = (1 / gamma^) * F^_Y^T w_t F^_X``, where gamma^, F^_X, F^_Y come
    from the write attention's own parameters.

    Args:
        h_dec: [B, H] current decoder state.
        patch_layer: ``{"w": [H, N^2], "b": [N^2]}``.
        attention_layer: ``{"w": [H, 5], "b": [5]}``.
        n: N, side of the patch.
        height: image height.
        width: image width.

    Returns:
        [B, D] canvas update, row-major.
    """
    w = linear(patch_layer, h_dec).reshape(h_dec.shape[0], n, n)
    g_x, g_y, sigma2, delta, gamma = attention_params(
        h_dec, attention_layer, n=n, height=height, width=width
    )
    f_x, f_y = filterbank(g_x, g_y, sigma2, delta, n=n, height=height, width=width)
    image = jnp.einsum("bih,bij,bjw->bhw", f_y, w, f_x)
    return image.reshape(h_dec.shape[0], height * width) / gamma[:, None]
