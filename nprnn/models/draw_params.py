"""DRAW's static config, parameter initialization and batch-norm statistics; imports nprnn,
nprnn._validate, nprnn._lstm and nprnn.models.attention.

The model itself (forward pass, loss, sampling) is :mod:`nprnn.models.draw`, which re-exports
everything here; use it through that module.

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

May import from nprnn: the package's public functions (``nprnn.init_params``,
``nprnn.init_bn_stats``, ``nprnn.update_bn_stats``), ``nprnn._validate``, ``nprnn._lstm`` (the
column norm) and ``nprnn.models.attention`` (the size of an attention layer).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

import nprnn
from nprnn import _validate
from nprnn._lstm import column_norm
from nprnn.models.attention import NUM_ATTENTION_PARAMS, tiling_bias

__all__ = [
    "ATTENTION_INITS",
    "DrawConfig",
    "draw_config",
    "init_draw",
    "init_draw_bn_stats",
    "update_draw_bn_stats",
]

Params = dict[str, Any]

#: Initializations of the attention layers' biases (`init_draw`'s ``attention_init``).
ATTENTION_INITS = ("tiled", "zero")


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
        _validate.one_of("LSTM variant", self.variant, nprnn.VARIANTS)
        for name in ("hidden_size", "latent_size", "glimpses", "height", "width"):
            _validate.positive_int(name, getattr(self, name))
        for name in ("read_n", "write_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(
                    f"{name} must be an integer >= 2 (the stride divides by N - 1), got {value!r}."
                )


jax.tree_util.register_static(DrawConfig)


def draw_config(consts: Params) -> DrawConfig:
    """The static `DrawConfig` of a model, from the consts that `init_draw` returns."""
    config = consts.get("config") if isinstance(consts, dict) else None
    if not isinstance(config, DrawConfig):
        raise ValueError(
            "consts must be the dict returned by init_draw, with a DrawConfig under "
            f"'config'; got {type(consts).__name__} without one."
        )
    return config


def _init_linear(
    key: jax.Array, fan_out: int, *, fan_in: int, std: float, weight_norm: bool, dtype
) -> Params:
    """N(0, std^2) weights [fan_in, fan_out], zero bias. Weight-normalized (``weight_norm``):
    the same draw as unit-norm columns and a ``gamma`` of their norms, the same function."""
    w = std * jax.random.normal(key, (fan_in, fan_out), dtype)
    b = jnp.zeros((fan_out,), dtype)
    if weight_norm:
        norm = column_norm(w)
        return {"w": w / norm, "gamma": norm, "b": b}
    return {"w": w, "b": b}


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
    compensation: str = "paper",
    forget_bias: float = 0.0,
    init_std: float = 0.01,
    weight_norm_linear: bool = False,
    attention_init: str = "tiled",
    learn_initial_state: bool = False,
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
        that at initialization mu ~ 0, sigma ~ 1 (L^z ~ 0), the attention parameters
        are those of the attention layers' biases, and the canvas starts near 0,
        whatever the scale of h. This matters for the normalized variants: their h has
        unit variance, and a Glorot-scaled layer on it gives log sigma with variance
        ~1-2, whose exp(2 log sigma) makes the initial L^z of a 256-unit, 64-glimpse
        model explode (millions of nats per image for normprop at gammas 0.5).

        The attention biases (``attention_init="tiled"``, the default) make both windows
        tile the whole image at zero input (`nprnn.models.attention.tiling_bias`): stride
        max(A, B) / N, sigma = stride / 2, read intensity 1, write intensity
        2 pi sigma^2. Zero biases (``"zero"``: what Gregor et al.'s parameterization and
        the authors' released code give) make point filters (sigma = 1) on a grid that
        spans the image; the 2 x 2 read then samples the four corner pixels, which are 0
        in every binarized-MNIST image, and the write lays 25 faint dots. With small
        weights the attention hardly depends on h, so the encoder sees nothing of the
        image, the KL term shuts it off, and training sits on the mean image (about 208
        nats, L^z about 0). Measured with configs/draw_mnist_study.py (H = 64, 16
        glimpses, 1,000 updates, seed 0): "zero" leaves lstm at 208 nats (KL 0.02) at lr
        1e-3 and 1e-2; "tiled" brings every study row off the plateau (lstm 183, KL 5 at
        lr 1e-3; 123-148 nats, KL 13-23, for the five rows at lr 1e-2).

        The initial states h^enc_0, c^enc_0, h^dec_0, c^dec_0 are zeros, trained with
        ``learn_initial_state`` (as the authors' released code, whose LSTM bricks keep them
        as parameters); the initial canvas c_0 is zeros, not learned, so the first error
        image is x - 0.5.

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
        compensation: normprop's form, "paper" or "released" (`nprnn.init_params`).
        forget_bias: initial forget-gate bias of both cells.
        init_std: standard deviation of the weights of the linear layers.
        weight_norm_linear: weight-normalized linear layers, ``gamma * (x w / ||w||) + b``
            (`nprnn.models.attention.linear`), as in the authors' released DRAW code; at
            initialization the same function as the plain layers.
        attention_init: biases of the read and write attention layers: "tiled" (the
            windows tile the image, `nprnn.models.attention.tiling_bias`) or "zero".
        learn_initial_state: train both cells' initial states (``params["initial"]``,
            zeros at init).
        dtype: parameter dtype.

    Returns:
        ``(params, consts)``. params: ``{"encoder", "decoder"`` (cell params),
        ``"mu", "log_sigma"`` ([H, Z] layers), ``"read_attention", "write_attention"``
        ([H, 5] layers), ``"write"`` ([H, write_n^2] layer)``}``, each layer
        ``{"w", "b"}``; with ``learn_initial_state`` also ``"initial": {"encoder",
        "decoder"}``, each ``{"h" [H], "c" [H]}``. consts: ``{"encoder", "decoder"``
        (frozen cell constants), ``"config"`` (a static `DrawConfig`)``}``.

    Raises:
        ValueError: for an unknown variant, a non-positive size or init_std, or an unknown
            attention_init.
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
    _validate.positive_gamma("init_std", init_std)
    _validate.one_of("attention_init", attention_init, ATTENTION_INITS)
    keys = jax.random.split(key, 7)
    cell = functools.partial(
        nprnn.init_params,
        hidden_size=hidden_size,
        variant=variant,
        variance_method=variance_method,
        compensation=compensation,
        forget_bias=forget_bias,
    )
    gammas = dict(gamma_x=gamma_x, gamma_h=gamma_h, gamma_c=gamma_c, dtype=dtype)
    enc_params, enc_consts = cell(keys[0], input_size=2 * read_n * read_n + hidden_size, **gammas)
    dec_params, dec_consts = cell(keys[1], input_size=latent_size, **gammas)
    layer = functools.partial(
        _init_linear,
        fan_in=hidden_size,
        std=init_std,
        weight_norm=weight_norm_linear,
        dtype=dtype,
    )
    params = {
        "encoder": enc_params,
        "decoder": dec_params,
        "mu": layer(keys[2], latent_size),
        "log_sigma": layer(keys[3], latent_size),
        "read_attention": layer(keys[4], NUM_ATTENTION_PARAMS),
        "write_attention": layer(keys[5], NUM_ATTENTION_PARAMS),
        "write": layer(keys[6], write_n * write_n),
    }
    if attention_init == "tiled":
        size = dict(height=height, width=width)
        for name, n, is_write in (("read", read_n, False), ("write", write_n, True)):
            bias = tiling_bias(n, write=is_write, **size).astype(dtype)
            params[f"{name}_attention"] = dict(params[f"{name}_attention"], b=bias)
    if learn_initial_state:
        zeros = jnp.zeros((hidden_size,), dtype)
        params["initial"] = {cell: {"h": zeros, "c": zeros} for cell in ("encoder", "decoder")}
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
    config = draw_config(consts)
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
