"""DRAW: a recurrent variational auto-encoder with attention, on any nprnn LSTM.

This module implements DRAW with read and write attention (Gregor et al., 2015) as
pure JAX functions, for the binarized-MNIST experiment of Table 3 of Laurent et al.
(2017). The encoder and the decoder are `nprnn.lstm_step` cells of any of the
variants in `nprnn.VARIANTS`; everything else (attention, latent layer, canvas) is
the same for every variant.

Per glimpse t = 1..T, with image x (height x width, flattened to D = height * width
pixels), canvas c_{t-1} and decoder state h^dec_{t-1}::

    x^_t     = x - sigmoid(c_{t-1})                         error image
    r_t      = read(x, x^_t, h^dec_{t-1})                   [B, 2 N_read^2]
    h^enc_t  = LSTM_enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])
    mu_t     = h^enc_t W_mu + b_mu,  log sigma_t = h^enc_t W_sigma + b_sigma
    z_t      = mu_t + sigma_t * eps_t,  eps_t ~ N(0, I)     reparameterized
    h^dec_t  = LSTM_dec(h^dec_{t-1}, z_t)
    c_t      = c_{t-1} + write(h^dec_t)                     [B, D]

and the loss of an image, in nats, is the variational bound::

    L^x = -log Bernoulli(x | sigmoid(c_T)) = sum_pixels softplus(c_T) - x * c_T
    L^z = sum_t 0.5 * sum_j (mu_tj^2 + sigma_tj^2 - log sigma_tj^2 - 1)

Shapes use T (glimpses), B (batch), D (pixels, 784), H (LSTM units) and Z (latent
size); N is an attention patch side (N_read = 2, N_write = 5 in the paper).

How the configuration travels: `init_draw` returns `(params, consts)`; `consts` holds
the encoder's and decoder's frozen cell constants and, under the key ``"config"``, a
`DrawConfig` (variant, sizes, number of glimpses). `DrawConfig` is registered as a
*static* pytree node: it has no array leaves and lives in the tree structure, so
`consts` can be passed straight through `jax.jit`, `jax.tree.map` and the like, and
jit specializes on it (a new config is a new compilation). Only `params` goes to the
optimizer. When restoring `consts` from a checkpoint, restore into the structure
that `init_draw` returns (the config itself holds no arrays to save).

Batch norm: the encoder and the decoder each keep their own per-glimpse statistics
(the glimpse index is the time index); `init_draw_bn_stats` makes them,
``draw_loss(..., training=True, return_moments=True)`` returns the batch moments of
a training step, and `update_draw_bn_stats` folds them into the population
statistics used with ``training=False``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from nprnn.models import draw
    >>> params, consts = draw.init_draw(
    ...     jax.random.key(0), variant="normprop", hidden_size=16, latent_size=4,
    ...     glimpses=3)
    >>> images = jnp.zeros((2, 784))
    >>> loss, metrics = jax.jit(draw.draw_loss)(params, consts, images, jax.random.key(1))
    >>> sorted(metrics)
    ['kl', 'loss', 'recon']
    >>> draw.draw_sample(params, consts, jax.random.key(2), 5).shape
    (3, 5, 784)

References:
    K. Gregor, I. Danihelka, A. Graves, D. J. Rezende, D. Wierstra, "DRAW: A Recurrent
    Neural Network For Image Generation", ICML 2015 (arXiv:1502.04623).
    C. Laurent, N. Ballas, P. Vincent, "Recurrent Normalization Propagation", ICLR 2017
    workshop track.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

import nprnn

__all__ = [
    "FILTERBANK_EPS",
    "DrawConfig",
    "attention_params",
    "filterbank",
    "read",
    "write",
    "init_draw",
    "init_draw_bn_stats",
    "update_draw_bn_stats",
    "draw_forward",
    "draw_loss",
    "draw_reconstruct",
    "draw_sample",
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


@dataclasses.dataclass(frozen=True)
class DrawConfig:
    """Static description of a DRAW model, stored in ``consts["config"]``.

    Registered as a static pytree node (no array leaves), so it can travel inside
    `consts` through `jax.jit`; jit specializes on its value.

    Attributes:
        variant: LSTM variant of the encoder and the decoder, one of `nprnn.VARIANTS`.
        hidden_size: H, units of each LSTM (paper: 256).
        latent_size: Z, size of each z_t (paper: 100).
        glimpses: T, number of glimpses (paper: 64).
        read_n: side of the read patches (paper: 2).
        write_n: side of the write patch (paper: 5).
        height: image height, the paper's B (28).
        width: image width, the paper's A (28).
    """

    variant: str
    hidden_size: int = 256
    latent_size: int = 100
    glimpses: int = 64
    read_n: int = 2
    write_n: int = 5
    height: int = 28
    width: int = 28

    @property
    def num_pixels(self) -> int:
        """D = height * width."""
        return self.height * self.width

    def validate(self) -> None:
        """Raises ValueError if a field is invalid."""
        variants = tuple(nprnn.VARIANTS)
        if self.variant not in variants:
            raise ValueError(f"Unknown variant {self.variant!r}; expected one of {variants}.")
        for name in ("hidden_size", "latent_size", "glimpses", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("read_n", "write_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(
                    f"{name} must be an integer >= 2 (the stride divides by N - 1), got {value!r}."
                )


jax.tree_util.register_static(DrawConfig)


# --------------------------------------------------------------------------- attention


def _linear(layer: Params, x: jax.Array) -> jax.Array:
    """x @ w + b for a layer ``{"w": [in, out], "b": [out]}``."""
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
    out = _linear(layer, h)
    gx_t, gy_t, log_sigma2, log_delta_t, log_gamma = (out[..., k] for k in range(5))
    g_x = (width + 1) / 2 * (gx_t + 1)
    g_y = (height + 1) / 2 * (gy_t + 1)
    delta = (max(width, height) - 1) / (n - 1) * jnp.exp(log_delta_t)
    return g_x, g_y, jnp.exp(log_sigma2), delta, jnp.exp(log_gamma)


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
    w = _linear(patch_layer, h_dec).reshape(h_dec.shape[0], n, n)
    g_x, g_y, sigma2, delta, gamma = attention_params(
        h_dec, attention_layer, n=n, height=height, width=width
    )
    f_x, f_y = filterbank(g_x, g_y, sigma2, delta, n=n, height=height, width=width)
    image = jnp.einsum("bih,bij,bjw->bhw", f_y, w, f_x)
    return image.reshape(h_dec.shape[0], height * width) / gamma[:, None]


# ------------------------------------------------------------------------------- init


def _init_linear(key: jax.Array, fan_out: int, *, fan_in: int, std: float, dtype) -> Params:
    """N(0, std^2) weights [fan_in, fan_out], zero bias."""
    w = std * jax.random.normal(key, (fan_in, fan_out), dtype)
    return {"w": w, "b": jnp.zeros((fan_out,), dtype)}


def init_draw(
    key: jax.Array,
    *,
    variant: str,
    hidden_size: int = 256,
    latent_size: int = 100,
    glimpses: int = 64,
    read_n: int = 2,
    write_n: int = 5,
    height: int = 28,
    width: int = 28,
    gamma_x: Any = None,
    gamma_h: Any = None,
    gamma_c: Any = None,
    variance_method: str = "analytic",
    init_std: float = 0.01,
    dtype: Any = jnp.float32,
) -> tuple[Params, Params]:
    """Initializes a DRAW model.

    The encoder LSTM reads ``[r_t, h^dec_{t-1}]`` (2 read_n^2 + H inputs), the decoder
    LSTM reads z_t (Z inputs); both are made by `nprnn.init_params` with `variant` and
    the gammas passed through (None: the core's default for the variant; Laurent et al.
    use 0.5 for all three on DRAW). The linear layers (mu, log sigma, both attentions,
    the write patch) have N(0, init_std^2) weights and zero biases.

    Notes:
        Neither paper gives the initialization of the linear layers. We use small
        weights (std 0.01, as the Blocks DRAW implementation of Bornschein does), so
        that at initialization mu ~ 0, sigma ~ 1 (L^z ~ 0), the attention sits at the
        image centre with stride delta = (max(A, B) - 1) / (N - 1) (the read grid spans
        the image), sigma^2 = gamma = 1, and the canvas starts near 0, whatever the
        scale of h. This matters for the normalized variants: their h has unit
        variance, and a Glorot-scaled layer on it gives log sigma with variance ~1-2,
        whose exp(2 log sigma) makes the initial L^z of a 256-unit, 64-glimpse model
        explode (millions of nats per image for normprop at gammas 0.5).

        The initial states h^enc_0, h^dec_0 and the initial canvas c_0 are zeros (not
        learned); c_0 = 0 means the first error image is x - 0.5.

    Args:
        key: PRNG key.
        variant: one of `nprnn.VARIANTS`.
        hidden_size: H (paper: 256).
        latent_size: Z (paper: 100).
        glimpses: T (paper: 64).
        read_n: read patch side (paper: 2).
        write_n: write patch side (paper: 5).
        height: image height (28).
        width: image width (28).
        gamma_x: initial gamma_x of both cells, or None.
        gamma_h: initial gamma_h of both cells, or None.
        gamma_c: initial gamma_c of both cells, or None.
        variance_method: normprop's variance constants, passed to `nprnn.init_params`
            ("analytic" or "simulated").
        init_std: standard deviation of the weights of the linear layers.
        dtype: parameter dtype.

    Returns:
        ``(params, consts)``. params: ``{"encoder", "decoder"`` (cell params),
        ``"mu", "log_sigma"`` ([H, Z] layers), ``"read_attention", "write_attention"``
        ([H, 5] layers), ``"write"`` ([H, write_n^2] layer)``}``, each layer
        ``{"w", "b"}``. consts: ``{"encoder", "decoder"`` (frozen cell constants),
        ``"config"`` (a static `DrawConfig`)``}``.

    Raises:
        ValueError: for an unknown variant, a non-positive size or init_std.
    """
    config = DrawConfig(
        variant=variant,
        hidden_size=hidden_size,
        latent_size=latent_size,
        glimpses=glimpses,
        read_n=read_n,
        write_n=write_n,
        height=height,
        width=width,
    )
    config.validate()
    if not init_std > 0:
        raise ValueError(f"init_std must be positive, got {init_std!r}.")
    keys = jax.random.split(key, 7)
    gammas = dict(
        gamma_x=gamma_x,
        gamma_h=gamma_h,
        gamma_c=gamma_c,
        variance_method=variance_method,
        dtype=dtype,
    )
    enc_params, enc_consts = nprnn.init_params(
        keys[0],
        input_size=2 * read_n * read_n + hidden_size,
        hidden_size=hidden_size,
        variant=variant,
        **gammas,
    )
    dec_params, dec_consts = nprnn.init_params(
        keys[1], input_size=latent_size, hidden_size=hidden_size, variant=variant, **gammas
    )
    linear = functools.partial(_init_linear, fan_in=hidden_size, std=init_std, dtype=dtype)
    params = {
        "encoder": enc_params,
        "decoder": dec_params,
        "mu": linear(keys[2], latent_size),
        "log_sigma": linear(keys[3], latent_size),
        "read_attention": linear(keys[4], NUM_ATTENTION_PARAMS),
        "write_attention": linear(keys[5], NUM_ATTENTION_PARAMS),
        "write": linear(keys[6], write_n * write_n),
    }
    consts = {"encoder": enc_consts, "decoder": dec_consts, "config": config}
    return params, consts


def init_draw_bn_stats(consts: Params, dtype: Any = jnp.float32) -> Params:
    """Per-glimpse batch-norm statistics of the encoder and the decoder.

    Args:
        consts: the consts of a batch-norm DRAW model (from `init_draw`).
        dtype: floating dtype of the statistics.

    Returns:
        ``{"encoder": ..., "decoder": ...}``, each from
        ``nprnn.init_bn_stats(H, T)``.

    Raises:
        ValueError: if the model's variant is not "batchnorm".
    """
    config = _config(consts)
    if config.variant != "batchnorm":
        raise ValueError(
            f"Batch-norm statistics exist only for variant 'batchnorm', got {config.variant!r}."
        )
    return {
        part: nprnn.init_bn_stats(config.hidden_size, config.glimpses, dtype=dtype)
        for part in ("encoder", "decoder")
    }


def update_draw_bn_stats(bn_stats: Params, moments: Params, *, momentum: float = 0.99) -> Params:
    """Folds a training step's batch moments into the population statistics.

    Args:
        bn_stats: ``{"encoder", "decoder"}`` statistics (`init_draw_bn_stats`).
        moments: the moments returned by ``draw_loss(..., return_moments=True)``,
            ``{"encoder", "decoder"}``, each stacked over the T glimpses.
        momentum: weight of the old statistics, passed to `nprnn.update_bn_stats`.

    Returns:
        The updated statistics, same structure as `bn_stats`.
    """
    return {
        part: nprnn.update_bn_stats(bn_stats[part], moments[part], momentum=momentum)
        for part in ("encoder", "decoder")
    }


# ---------------------------------------------------------------------------- forward


def _config(consts: Params) -> DrawConfig:
    config = consts.get("config") if isinstance(consts, dict) else None
    if not isinstance(config, DrawConfig):
        raise ValueError(
            "consts must be the dict returned by init_draw, with a DrawConfig under "
            f"'config'; got {type(consts).__name__} without one."
        )
    return config


def _check_bn(config: DrawConfig, bn_stats, training: bool, return_moments: bool) -> None:
    if config.variant == "batchnorm" and not training and bn_stats is None:
        raise ValueError(
            "Variant 'batchnorm' with training=False needs bn_stats (from init_draw_bn_stats), "
            "got None."
        )
    if return_moments and not (config.variant == "batchnorm" and training):
        raise ValueError(
            "return_moments=True needs variant 'batchnorm' and training=True, got "
            f"variant={config.variant!r}, training={training!r}."
        )


def _check_images(config: DrawConfig, images: jax.Array) -> None:
    if images.ndim != 2 or images.shape[1] != config.num_pixels:
        raise ValueError(
            f"images must be [B, {config.num_pixels}] (height {config.height} x width "
            f"{config.width}, flattened row-major), got shape {tuple(images.shape)}."
        )


def _cell(
    params: Params,
    consts: Params,
    state: nprnn.LSTMState,
    x: jax.Array,
    *,
    variant: str,
    training: bool,
    bn_stats,
    t: jax.Array,
    return_moments: bool,
):
    """One `nprnn.lstm_step`; returns (state, h, moments or None)."""
    kwargs = {}
    if variant == "batchnorm":
        kwargs = dict(bn_stats=bn_stats, t=t)
        if return_moments:
            kwargs["return_moments"] = True
    out = nprnn.lstm_step(params, consts, state, x, variant=variant, training=training, **kwargs)
    if return_moments:
        state, (h, moments) = out
        return state, h, moments
    state, h = out
    return state, h, None


def _attention_record(h: jax.Array, layer: Params, n: int, config: DrawConfig) -> jax.Array:
    """[B, 5] (g_x, g_y, sigma2, delta, gamma) for figures."""
    values = attention_params(h, layer, n=n, height=config.height, width=config.width)
    return jnp.stack(values, axis=-1)


def draw_forward(
    params: Params,
    consts: Params,
    images: jax.Array,
    key: jax.Array,
    *,
    training: bool = False,
    bn_stats: Params | None = None,
    return_moments: bool = False,
) -> dict[str, Any]:
    """Runs the T glimpses of DRAW on a batch of images (one `jax.lax.scan`).

    See the module docstring for the equations. The noise of all T glimpses is drawn
    up front as ``eps = jax.random.normal(key, (T, B, Z), dtype)`` (eps[t] for glimpse
    t + 1), so the result is a deterministic function of (params, consts, images, key).
    The cells are `nprnn.lstm_step` calls with the glimpse index 0..T-1 as time index.

    Args:
        params: from `init_draw`.
        consts: from `init_draw` (carries the static `DrawConfig`).
        images: [B, D] binary (or [0, 1]) images, flattened row-major.
        key: PRNG key for the reparameterization noise.
        training: passed to the cells; for batch norm, True uses the batch statistics
            of every glimpse, False the population statistics in `bn_stats`. Static.
        bn_stats: ``{"encoder", "decoder"}`` from `init_draw_bn_stats`; required for
            variant "batchnorm" with ``training=False``, unused in training (the batch
            statistics are used) and by the other variants.
        return_moments: batch norm in training only: also return the batch moments.

    Returns:
        A dict with
        ``"canvas_logits"`` [T, B, D] c_1..c_T,
        ``"mu"``, ``"log_sigma"`` [T, B, Z] the approximate posteriors,
        ``"read_attention"``, ``"write_attention"`` [T, B, 5] the attention
        parameters (g_X, g_Y, sigma^2, delta, gamma) of every glimpse,
        ``"recon"`` [B] L^x and ``"kl"`` [B] L^z in nats per image,
        and, with `return_moments`, ``"moments"``: ``{"encoder", "decoder"}`` stacked
        over the T glimpses (input for `update_draw_bn_stats`).

    Raises:
        ValueError: for images of the wrong shape, missing bn_stats for batch norm at
            inference, or return_moments without batch norm in training.
    """
    config = _config(consts)
    _check_images(config, images)
    _check_bn(config, bn_stats, training, return_moments)
    dtype = params["mu"]["w"].dtype
    images = jnp.asarray(images, dtype)
    batch = images.shape[0]
    hidden, n_r, n_w = config.hidden_size, config.read_n, config.write_n
    size = dict(height=config.height, width=config.width)
    use_stats = config.variant == "batchnorm" and bn_stats is not None
    bn = bn_stats if use_stats else {"encoder": None, "decoder": None}
    cell = functools.partial(
        _cell, variant=config.variant, training=training, return_moments=return_moments
    )

    def glimpse(carry, xs):
        enc_state, dec_state, canvas = carry
        eps, t = xs
        x_hat = images - jax.nn.sigmoid(canvas)
        r = read(images, x_hat, dec_state.h, params["read_attention"], n=n_r, **size)
        enc_in = jnp.concatenate([r, dec_state.h], axis=-1)
        enc_state, h_enc, enc_moments = cell(
            params["encoder"], consts["encoder"], enc_state, enc_in, bn_stats=bn["encoder"], t=t
        )
        mu = _linear(params["mu"], h_enc)
        log_sigma = _linear(params["log_sigma"], h_enc)
        z = mu + jnp.exp(log_sigma) * eps
        read_att = _attention_record(dec_state.h, params["read_attention"], n_r, config)
        dec_state, h_dec, dec_moments = cell(
            params["decoder"], consts["decoder"], dec_state, z, bn_stats=bn["decoder"], t=t
        )
        canvas = canvas + write(h_dec, params["write"], params["write_attention"], n=n_w, **size)
        out = {
            "canvas_logits": canvas,
            "mu": mu,
            "log_sigma": log_sigma,
            "read_attention": read_att,
            "write_attention": _attention_record(h_dec, params["write_attention"], n_w, config),
        }
        if return_moments:
            out["moments"] = {"encoder": enc_moments, "decoder": dec_moments}
        return (enc_state, dec_state, canvas), out

    eps = jax.random.normal(key, (config.glimpses, batch, config.latent_size), dtype)
    carry = (
        nprnn.init_state(batch, hidden, dtype=dtype),
        nprnn.init_state(batch, hidden, dtype=dtype),
        jnp.zeros((batch, config.num_pixels), dtype),
    )
    _, outs = jax.lax.scan(glimpse, carry, (eps, jnp.arange(config.glimpses)))
    logits = outs["canvas_logits"][-1]
    # -log Bernoulli(x | sigmoid(c)) = softplus(c) - x c, stable for any c.
    outs["recon"] = jnp.sum(jax.nn.softplus(logits) - images * logits, axis=-1)
    mu, log_sigma = outs["mu"], outs["log_sigma"]
    kl = 0.5 * (jnp.square(mu) + jnp.exp(2 * log_sigma) - 2 * log_sigma - 1)
    outs["kl"] = jnp.sum(kl, axis=(0, 2))
    return outs


def draw_loss(
    params: Params,
    consts: Params,
    images: jax.Array,
    key: jax.Array,
    *,
    training: bool = False,
    bn_stats: Params | None = None,
    return_moments: bool = False,
):
    """Mean variational bound L^x + L^z over a batch, in nats per image.

    Arguments as in `draw_forward`; `training` and `return_moments` are static (use
    ``jax.jit(draw_loss, static_argnames=("training", "return_moments"))`` or a
    `functools.partial`).

    Returns:
        ``(loss, metrics)`` with loss a scalar, the batch mean of L^x + L^z, and
        metrics ``{"loss", "recon", "kl"}`` the batch means of L^x + L^z, L^x and L^z.
        With ``return_moments=True`` (batch norm, training): ``(loss, (metrics,
        moments))``, so that ``jax.value_and_grad(draw_loss, has_aux=True)`` works
        in both cases.

    Example:
        >>> grad_fn = jax.value_and_grad(draw_loss, has_aux=True)  # doctest: +SKIP
        >>> (loss, metrics), grads = grad_fn(params, consts, images, key)  # doctest: +SKIP
    """
    outs = draw_forward(
        params,
        consts,
        images,
        key,
        training=training,
        bn_stats=bn_stats,
        return_moments=return_moments,
    )
    recon = jnp.mean(outs["recon"])
    kl = jnp.mean(outs["kl"])
    loss = recon + kl
    metrics = {"loss": loss, "recon": recon, "kl": kl}
    if return_moments:
        return loss, (metrics, outs["moments"])
    return loss, metrics


def draw_reconstruct(
    params: Params,
    consts: Params,
    images: jax.Array,
    key: jax.Array,
    *,
    training: bool = False,
    bn_stats: Params | None = None,
) -> jax.Array:
    """Canvas probabilities sigmoid(c_t) of every glimpse while reconstructing images.

    Args:
        params: from `init_draw`.
        consts: from `init_draw`.
        images: [B, D] images.
        key: PRNG key for the posterior samples z_t.
        training: as in `draw_forward` (static).
        bn_stats: required for variant "batchnorm" with ``training=False``.

    Returns:
        [T, B, D] probabilities in [0, 1]; index -1 is the reconstruction.
    """
    outs = draw_forward(params, consts, images, key, training=training, bn_stats=bn_stats)
    return jax.nn.sigmoid(outs["canvas_logits"])


def draw_sample(
    params: Params,
    consts: Params,
    key: jax.Array,
    num: int,
    *,
    bn_stats: Params | None = None,
) -> jax.Array:
    """Generates images: z_t ~ N(0, I), the decoder alone, c_t = c_{t-1} + write(h^dec_t).

    Batch norm uses the decoder's population statistics (``training=False``).

    Args:
        params: from `init_draw`.
        consts: from `init_draw`.
        key: PRNG key for the prior samples.
        num: number of images (static under jit: ``static_argnames="num"``).
        bn_stats: required for variant "batchnorm".

    Returns:
        [T, num, D] canvas probabilities sigmoid(c_t) of every glimpse; index -1 is the
        sample.
    """
    config = _config(consts)
    _check_bn(config, bn_stats, False, False)
    dtype = params["mu"]["w"].dtype
    size = dict(height=config.height, width=config.width)
    dec_stats = bn_stats["decoder"] if config.variant == "batchnorm" else None

    def step(carry, xs):
        dec_state, canvas = carry
        z, t = xs
        dec_state, h_dec, _ = _cell(
            params["decoder"],
            consts["decoder"],
            dec_state,
            z,
            variant=config.variant,
            training=False,
            bn_stats=dec_stats,
            t=t,
            return_moments=False,
        )
        canvas = canvas + write(
            h_dec, params["write"], params["write_attention"], n=config.write_n, **size
        )
        return (dec_state, canvas), jax.nn.sigmoid(canvas)

    z = jax.random.normal(key, (config.glimpses, num, config.latent_size), dtype)
    carry = (
        nprnn.init_state(num, config.hidden_size, dtype=dtype),
        jnp.zeros((num, config.num_pixels), dtype),
    )
    _, canvases = jax.lax.scan(step, carry, (z, jnp.arange(config.glimpses)))
    return canvases
