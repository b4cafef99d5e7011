"""Character-level language model over any LSTM variant (the paper's PTB and text8 models);
imports nprnn, nprnn._validate and nprnn.models._states.

    x_t     = onehot(s_t) @ P                      P: fixed random orthogonal [V, V] (``consts``)
    h^l_t   = LSTM_l(h^l_{t-1}, h^{l-1}_t)          l = 1..L, h^0_t = x_t, any nprnn variant
    p(s_{t+1} | s_{<=t}) = softmax(h^L_t W + b)

The one-hot inputs are multiplied by a fixed random orthogonal matrix "so that inputs are
normalized" (Laurent et al. 2017, section 5.1): ``P`` is a frozen constant, never trained.
Options for the regularized model of Table 2: input and output dropout, recurrent dropout inside
the cells (Semeniuta et al. 2016), and "batch data normalization" of the inputs (each input
feature standardized with the statistics of the mini-batch in training and running population
statistics at inference).

Sequences are time-major: ids [T, B]. The loss is in nats per character; bits per character are
nats / ln 2.

May import from nprnn: the package's public functions (``nprnn.run_sequence``,
``nprnn.lstm_step``, ``nprnn.init_params``, ...), ``nprnn._validate`` and
``nprnn.models._states`` (the start state).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

import nprnn
from nprnn import _validate
from nprnn.models._states import start_state

Params = dict[str, Any]

__all__ = [
    "CharLMConfig",
    "init_charlm",
    "init_charlm_state",
    "initial_states",
    "charlm_apply",
    "charlm_loss",
    "charlm_sample",
    "update_charlm_state",
]


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class CharLMConfig:
    """Static description of a character LM (hashable, travels in ``consts["config"]``).

    Attributes:
        variant: one of ``nprnn.VARIANTS``.
        vocab_size: V.
        hidden_size: H of every layer.
        num_layers: L.
        max_steps: batchnorm only: T_max of the per-step statistics.
        input_dropout: dropout rate on x_t (training only).
        output_dropout: dropout rate on h^L_t before the softmax (training only).
        recurrent_dropout: dropout rate on the cell candidate of every layer (training only).
        input_norm: "batch data normalization" of x_t (Table 2).
        matmul_dtype: mixed precision: dtype name of the cells' matrix products ("bfloat16"),
            or None for full precision (see ``nprnn.run_sequence``).
        learn_initial_state: train every layer's ``h_0``, ``c_0`` (zeros at init), as the
            authors' released code does; False: sequences start from zeros.
    """

    variant: str
    vocab_size: int
    hidden_size: int
    num_layers: int = 1
    max_steps: int = 100
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    input_norm: bool = False
    matmul_dtype: str | None = None
    learn_initial_state: bool = False


def init_charlm(key: jax.Array, config: CharLMConfig, **cell_options) -> tuple[Params, Params]:
    """Initializes a character LM.

    Args:
        key: PRNG key.
        config: the model's :class:`CharLMConfig`.
        **cell_options: passed to :func:`nprnn.init_params` for every layer (``gamma_x``,
            ``gamma_h``, ``gamma_c``, ``variance_method``, ``forget_bias``, ``dtype``).

    Returns:
        ``(params, consts)``. ``params = {"layers": [cell params] * L, "head": {"w" [H, V],
        "b" [V]}}``, plus ``"initial": [{"h" [H], "c" [H]}] * L`` with ``learn_initial_state``;
        ``consts = {"config", "layers": [cell consts] * L, "input_proj" [V, V]}``
        plus, with ``input_norm``, nothing trainable (the input statistics live in the model
        state, see :func:`init_charlm_state`).
    """
    _validate.one_of("LSTM variant", config.variant, nprnn.VARIANTS)
    keys = jax.random.split(key, config.num_layers + 2)
    dtype = cell_options.get("dtype", jnp.float32)
    layers, layer_consts = [], []
    for layer in range(config.num_layers):
        p, c = nprnn.init_params(
            keys[layer],
            input_size=config.vocab_size if layer == 0 else config.hidden_size,
            hidden_size=config.hidden_size,
            variant=config.variant,
            **cell_options,
        )
        layers.append(p)
        layer_consts.append(c)
    proj = jax.nn.initializers.orthogonal()(keys[-2], (config.vocab_size,) * 2, dtype)
    head_w = jax.nn.initializers.glorot_uniform()(
        keys[-1], (config.hidden_size, config.vocab_size), dtype
    )
    params = {"layers": layers, "head": {"w": head_w, "b": jnp.zeros((config.vocab_size,), dtype)}}
    if config.learn_initial_state:
        zeros = jnp.zeros((config.hidden_size,), dtype)
        params["initial"] = [{"h": zeros, "c": zeros} for _ in range(config.num_layers)]
    consts = {"config": config, "layers": layer_consts, "input_proj": proj}
    return params, consts


def init_charlm_state(consts: Params, dtype=jnp.float32) -> Params:
    """Non-trainable model state: batch-norm statistics and input-normalization statistics.

    Returns:
        ``{"bn": [stats] * L or None, "input": {"mean", "var"} or None}``.
    """
    config: CharLMConfig = consts["config"]
    bn = None
    if config.variant == "batchnorm":
        bn = [
            nprnn.init_bn_stats(config.hidden_size, config.max_steps, dtype)
            for _ in range(config.num_layers)
        ]
    inp = None
    if config.input_norm:
        v = config.vocab_size
        inp = {"mean": jnp.zeros((v,), dtype), "var": jnp.ones((v,), dtype)}
    return {"bn": bn, "input": inp}


def initial_states(params: Params, consts: Params, batch_size: int, dtype=jnp.float32) -> list:
    """The L states a sequence starts from: the trained ``params["initial"]`` broadcast to the
    batch (``learn_initial_state``), else zeros."""
    config: CharLMConfig = consts["config"]
    initial = params.get("initial", [None] * config.num_layers)
    return [start_state(p, batch_size, config.hidden_size, dtype) for p in initial]


def _dropout(key, rate, x):
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def charlm_apply(
    params: Params,
    consts: Params,
    model_state: Params,
    ids: jax.Array,
    *,
    states: list | None = None,
    t0=0,
    training: bool = False,
    key: jax.Array | None = None,
):
    """Runs the model over time-major ids.

    Args:
        params, consts: from :func:`init_charlm`.
        model_state: from :func:`init_charlm_state` (statistics used at inference).
        ids: int [T, B] input symbols.
        states: optional list of L ``LSTMState`` to start from (None: :func:`initial_states`),
            for carrying the state across chunks of a long sequence.
      t0: time index of ``ids[0]`` (batchnorm statistics rows) when continuing a sequence.
        training: dropout on, batch statistics for batchnorm and input normalization.
        key: PRNG key, needed in training when a dropout rate is positive.

    Returns:
        ``(logits [T, B, V], final_states, batch_moments)`` where ``batch_moments`` holds, in
        training, the batch statistics to fold into ``model_state`` (:func:`update_charlm_state`).
    """
    config: CharLMConfig = consts["config"]
    batch = ids.shape[1]
    keys = list(jax.random.split(key, config.num_layers + 2)) if key is not None else None
    x = consts["input_proj"][ids]
    moments = {"bn": None, "input": None}
    if config.input_norm:
        if training:
            mean = jnp.mean(x, axis=(0, 1))
            var = jnp.var(x, axis=(0, 1))
            moments["input"] = {"mean": mean, "var": var}
        else:
            mean, var = model_state["input"]["mean"], model_state["input"]["var"]
        x = (x - mean) * jax.lax.rsqrt(var + nprnn.NORM_EPSILON)
    if training and config.input_dropout > 0:
        x = _dropout(keys[-2], config.input_dropout, x)
    if states is None:
        states = initial_states(params, consts, batch, x.dtype)
    final, bn_moments = [], []
    for layer in range(config.num_layers):
        bn = model_state["bn"][layer] if config.variant == "batchnorm" else None
        want_moments = training and config.variant == "batchnorm"
        state, outputs = nprnn.run_sequence(
            params["layers"][layer],
            consts["layers"][layer],
            states[layer],
            x,
            variant=config.variant,
            training=training,
            bn_stats=bn,
            t0=t0,
            key=keys[layer] if keys is not None else None,
            dropout_rate=config.recurrent_dropout,
            return_moments=want_moments,
            matmul_dtype=config.matmul_dtype,
        )
        final.append(state)
        if want_moments:
            x, layer_moments = outputs
            bn_moments.append(layer_moments)
        else:
            x = outputs
    if want_moments:
        moments["bn"] = bn_moments
    if training and config.output_dropout > 0:
        x = _dropout(keys[-1], config.output_dropout, x)
    logits = x @ params["head"]["w"] + params["head"]["b"]
    return logits, final, moments


def update_charlm_state(model_state: Params, moments: Params, *, momentum: float) -> Params:
    """Folds the batch moments of one training step into the population statistics."""
    out = dict(model_state)
    if moments["bn"] is not None:
        out["bn"] = [
            nprnn.update_bn_stats(s, m, momentum=momentum)
            for s, m in zip(model_state["bn"], moments["bn"], strict=True)
        ]
    if moments["input"] is not None:
        out["input"] = jax.tree.map(
            lambda old, new: momentum * old + (1.0 - momentum) * new,
            model_state["input"],
            moments["input"],
        )
    return out


def charlm_loss(
    params: Params,
    consts: Params,
    model_state: Params,
    inputs: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    *,
    training: bool = False,
    key: jax.Array | None = None,
):
    """Mean cross-entropy in nats per character over the (masked) targets.

    Args:
        inputs, targets: int [T, B]; ``mask``: optional bool [T, B] of the targets that count.

    Returns:
        ``(loss, aux)`` with ``aux = {"nll_sum", "count", "moments"}`` (sums, so that metrics can
        be accumulated over batches and divided on the host).
    """
    logits, _, moments = charlm_apply(
        params, consts, model_state, inputs, training=training, key=key
    )
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    mask = jnp.ones_like(nll) if mask is None else mask.astype(nll.dtype)
    nll_sum = jnp.sum(nll * mask)
    count = jnp.sum(mask)
    return nll_sum / jnp.maximum(count, 1.0), {
        "nll_sum": nll_sum,
        "count": count,
        "moments": moments,
    }


BITS_PER_NAT = 1.0 / math.log(2.0)


def charlm_sample(
    params: Params,
    consts: Params,
    model_state: Params,
    prompt: jax.Array,
    key: jax.Array,
    *,
    length: int,
    temperature: float = 1.0,
) -> jax.Array:
    """Samples ``length`` symbols after a prompt (inference mode: no dropout, population stats).

    Args:
        prompt: int [P] symbol ids (P >= 1), read with the model before sampling starts.
        key: PRNG key.
        length: number of symbols to sample (static).
        temperature: softmax temperature (> 0).

    Returns:
        int [length] sampled ids.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if prompt.ndim != 1 or prompt.shape[0] < 1:
        raise ValueError(f"prompt must be a non-empty 1-D array of ids, got shape {prompt.shape}")
    config: CharLMConfig = consts["config"]
    logits, states, _ = charlm_apply(params, consts, model_state, prompt[:, None])
    offset = prompt.shape[0]

    def step(carry, inputs):
        states, logits = carry
        t, step_key = inputs
        symbol = jax.random.categorical(step_key, logits / temperature)
        x = consts["input_proj"][symbol]
        if config.input_norm:
            stats = model_state["input"]
            x = (x - stats["mean"]) * jax.lax.rsqrt(stats["var"] + nprnn.NORM_EPSILON)
        new_states = []
        for layer in range(config.num_layers):
            state, x = nprnn.lstm_step(
                params["layers"][layer],
                consts["layers"][layer],
                states[layer],
                x,
                variant=config.variant,
                bn_stats=model_state["bn"][layer] if config.variant == "batchnorm" else None,
                t=t,
            )
            new_states.append(state)
        logits = x @ params["head"]["w"] + params["head"]["b"]
        return (new_states, logits), symbol[0]

    ts = offset + jnp.arange(length)
    _, symbols = jax.lax.scan(step, (states, logits[-1]), (ts, jax.random.split(key, length)))
    return symbols
