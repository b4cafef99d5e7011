"""DRAW: a recurrent variational auto-encoder with attention, on any nprnn LSTM; imports nprnn,
nprnn.models.attention, nprnn.models.draw_params and nprnn.models._states.

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

`init_draw` returns `(params, consts)`, with a static `DrawConfig` in ``consts["config"]``;
batch norm keeps per-glimpse statistics of the encoder and the decoder (`init_draw_bn_stats`,
`update_draw_bn_stats`). Both are defined in :mod:`nprnn.models.draw_params` (which says how
the config travels through `jax.jit`) and re-exported here.

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

May import from nprnn: the package's public functions (``nprnn.lstm_step``),
``nprnn.models.attention`` (read, write and their filterbanks),
``nprnn.models.draw_params`` (config, initialization, batch-norm statistics) and
``nprnn.models._states`` (the start state of each cell).

References:
    K. Gregor, I. Danihelka, A. Graves, D. J. Rezende, D. Wierstra, "DRAW: A Recurrent
    Neural Network For Image Generation", ICML 2015 (arXiv:1502.04623).
    C. Laurent, N. Ballas, P. Vincent, "Recurrent Normalization Propagation", ICLR 2017
    workshop track.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import nprnn
from nprnn.models._states import start_state
from nprnn.models.attention import attention_record, linear, read, write
from nprnn.models.draw_params import (
    DrawConfig,
    Params,
    draw_config,
    init_draw,
    init_draw_bn_stats,
    update_draw_bn_stats,
)

__all__ = [
    "DrawConfig",
    "draw_config",
    "init_draw",
    "init_draw_bn_stats",
    "update_draw_bn_stats",
    "draw_forward",
    "draw_loss",
    "draw_reconstruct",
    "draw_sample",
]

# ---------------------------------------------------------------------------- forward


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


def _decode(
    params: Params,
    consts: Params,
    config: DrawConfig,
    state: nprnn.LSTMState,
    canvas: jax.Array,
    z: jax.Array,
    t: jax.Array,
    *,
    training: bool,
    bn_stats,
    return_moments: bool,
):
    """h^dec_t = LSTM_dec(h^dec_{t-1}, z_t) and c_t = c_{t-1} + write(h^dec_t).

    Returns:
        ``(state, h_dec, moments or None, canvas)``.
    """
    state, h_dec, moments = _cell(
        params["decoder"],
        consts["decoder"],
        state,
        z,
        variant=config.variant,
        training=training,
        bn_stats=bn_stats,
        t=t,
        return_moments=return_moments,
    )
    canvas = canvas + write(
        h_dec,
        params["write"],
        params["write_attention"],
        n=config.write_n,
        height=config.height,
        width=config.width,
    )
    return state, h_dec, moments, canvas


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
    config = draw_config(consts)
    _check_images(config, images)
    _check_bn(config, bn_stats, training, return_moments)
    dtype = params["mu"]["w"].dtype
    images = jnp.asarray(images, dtype)
    batch = images.shape[0]
    hidden, n_r, n_w = config.hidden_size, config.read_n, config.write_n
    size = dict(height=config.height, width=config.width)
    use_stats = config.variant == "batchnorm" and bn_stats is not None
    bn = bn_stats if use_stats else {"encoder": None, "decoder": None}
    modes = dict(training=training, return_moments=return_moments)

    def glimpse(carry, xs):
        enc_state, dec_state, canvas = carry
        eps, t = xs
        x_hat = images - jax.nn.sigmoid(canvas)
        r = read(images, x_hat, dec_state.h, params["read_attention"], n=n_r, **size)
        enc_in = jnp.concatenate([r, dec_state.h], axis=-1)
        enc_state, h_enc, enc_moments = _cell(
            params["encoder"],
            consts["encoder"],
            enc_state,
            enc_in,
            variant=config.variant,
            bn_stats=bn["encoder"],
            t=t,
            **modes,
        )
        mu = linear(params["mu"], h_enc)
        log_sigma = linear(params["log_sigma"], h_enc)
        z = mu + jnp.exp(log_sigma) * eps
        read_att = attention_record(dec_state.h, params["read_attention"], n=n_r, **size)
        dec_state, h_dec, dec_moments, canvas = _decode(
            params, consts, config, dec_state, canvas, z, t, bn_stats=bn["decoder"], **modes
        )
        out = {
            "canvas_logits": canvas,
            "mu": mu,
            "log_sigma": log_sigma,
            "read_attention": read_att,
            "write_attention": attention_record(h_dec, params["write_attention"], n=n_w, **size),
        }
        if return_moments:
            out["moments"] = {"encoder": enc_moments, "decoder": dec_moments}
        return (enc_state, dec_state, canvas), out

    eps = jax.random.normal(key, (config.glimpses, batch, config.latent_size), dtype)
    initial = params.get("initial", {})  # learn_initial_state: trained h_0, c_0 of each cell
    carry = (
        start_state(initial.get("encoder"), batch, hidden, dtype),
        start_state(initial.get("decoder"), batch, hidden, dtype),
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
    config = draw_config(consts)
    _check_bn(config, bn_stats, False, False)
    dtype = params["mu"]["w"].dtype
    dec_stats = bn_stats["decoder"] if config.variant == "batchnorm" else None

    def step(carry, xs):
        dec_state, canvas = carry
        z, t = xs
        dec_state, _, _, canvas = _decode(
            params,
            consts,
            config,
            dec_state,
            canvas,
            z,
            t,
            training=False,
            bn_stats=dec_stats,
            return_moments=False,
        )
        return (dec_state, canvas), jax.nn.sigmoid(canvas)

    z = jax.random.normal(key, (config.glimpses, num, config.latent_size), dtype)
    carry = (
        start_state(params.get("initial", {}).get("decoder"), num, config.hidden_size, dtype),
        jnp.zeros((num, config.num_pixels), dtype),
    )
    _, canvases = jax.lax.scan(step, carry, (z, jnp.arange(config.glimpses)))
    return canvases
