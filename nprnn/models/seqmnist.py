"""Sequential (pixel-by-pixel) MNIST classifier over any LSTM variant; imports nprnn and
nprnn.models._states.

The 784 pixels of an image, optionally under a fixed permutation, are read one per time step by
an LSTM; the class is predicted from the last hidden state (Le et al. 2015; Cooijmans et al.
2016 use it to compare normalized LSTMs):

    x_t = (pixel_t - PIXEL_MEAN) / PIXEL_STD        standardized, as normalization propagation
    h_t = LSTM(h_{t-1}, x_t)                        assumes unit-variance inputs
    p(y | image) = softmax(h_784 W + b)

May import from nprnn: the package's public functions (``nprnn.run_sequence``,
``nprnn.init_params``, ...) and ``nprnn.models._states`` (the start state).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

import nprnn
from nprnn.models._states import start_state

Params = dict[str, Any]

__all__ = ["SeqMNISTConfig", "init_seqmnist", "seqmnist_loss", "PIXEL_MEAN", "PIXEL_STD"]

# Mean and standard deviation of MNIST training pixels scaled to [0, 1].
PIXEL_MEAN = 0.1307
PIXEL_STD = 0.3081


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class SeqMNISTConfig:
    """Static description of the classifier (travels in ``consts["config"]``).

    Attributes:
        variant: one of ``nprnn.VARIANTS``.
        hidden_size: H.
        num_classes: 10.
        max_steps: batchnorm only: T_max of the statistics (784 pixels).
        learn_initial_state: train ``h_0``, ``c_0`` (``params["initial"]``, zeros at init).
    """

    variant: str
    hidden_size: int
    num_classes: int = 10
    max_steps: int = 784
    learn_initial_state: bool = False


def init_seqmnist(key: jax.Array, config: SeqMNISTConfig, **cell_options) -> tuple[Params, Params]:
    """``(params, consts)``: one LSTM layer on 1-D inputs and a linear classifier."""
    key_cell, key_head = jax.random.split(key)
    cell, cell_consts = nprnn.init_params(
        key_cell,
        input_size=1,
        hidden_size=config.hidden_size,
        variant=config.variant,
        **cell_options,
    )
    dtype = cell_options.get("dtype", jnp.float32)
    head_w = jax.nn.initializers.glorot_uniform()(
        key_head, (config.hidden_size, config.num_classes), dtype
    )
    params = {"cell": cell, "head": {"w": head_w, "b": jnp.zeros((config.num_classes,), dtype)}}
    if config.learn_initial_state:
        zeros = jnp.zeros((config.hidden_size,), dtype)
        params["initial"] = {"h": zeros, "c": zeros}
    return params, {"config": config, "cell": cell_consts}


def init_seqmnist_state(consts: Params, dtype=jnp.float32) -> Params:
    """Batch-norm statistics (``{"bn": stats or None}``)."""
    config: SeqMNISTConfig = consts["config"]
    if config.variant != "batchnorm":
        return {"bn": None}
    return {"bn": nprnn.init_bn_stats(config.hidden_size, config.max_steps, dtype)}


def seqmnist_loss(
    params: Params,
    consts: Params,
    model_state: Params,
    pixels: jax.Array,
    labels: jax.Array,
    *,
    training: bool = False,
):
    """Mean cross-entropy (nats) and accuracy.

    Args:
        pixels: float [B, T, 1] in [0, 1] (from ``nprnn.data.pixel_sequences``).
        labels: int [B].

    Returns:
        ``(loss, aux)`` with ``aux = {"nll_sum", "correct", "count", "moments"}``.
    """
    config: SeqMNISTConfig = consts["config"]
    xs = (jnp.swapaxes(pixels, 0, 1) - PIXEL_MEAN) / PIXEL_STD
    want_moments = training and config.variant == "batchnorm"
    batch = pixels.shape[0]
    state = start_state(params.get("initial"), batch, config.hidden_size, xs.dtype)
    final, outputs = nprnn.run_sequence(
        params["cell"],
        consts["cell"],
        state,
        xs,
        variant=config.variant,
        training=training,
        bn_stats=model_state["bn"],
        return_moments=want_moments,
    )
    bn_moments = outputs[1] if want_moments else None  # outputs: hs, or (hs, moments)
    logits = final.h @ params["head"]["w"] + params["head"]["b"]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == labels)
    aux = {
        "nll_sum": jnp.sum(nll),
        "correct": correct,
        "count": jnp.asarray(labels.shape[0], jnp.float32),
        "moments": {"bn": bn_moments},
    }
    return jnp.mean(nll), aux
