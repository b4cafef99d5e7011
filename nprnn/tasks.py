"""The four training tasks behind one small interface, built from a config; imports nprnn,
nprnn.configs, nprnn.gradient_flow, nprnn.data and nprnn.models.

A :class:`Task` bundles what the training loop needs and nothing else:

* ``init(key) -> (params, consts, model_state)``: trainable parameters, frozen constants and the
  non-trainable model state (batch-norm and input statistics; ``{}``-like when unused);
* ``train_batch(step, seed=None)``: the training batch of a step, a pure function of
  ``(seed, step)`` (``seed`` defaults to ``config.seed``; the replicas of ``train.num_seeds``
  pass their own), so that the data position of a run is its step number;
* ``loss(params, consts, model_state, batch, key, training) -> (loss, aux)`` with
  ``aux["moments"]`` the batch statistics to fold into the model state;
* ``update_state(model_state, moments)``;
* ``evaluate(params, consts, model_state, split, max_batches) -> metrics``: sums over a split,
  divided on the host;
* ``steps_per_epoch`` and ``metric`` (the number the paper reports: ``"bpc"``, ``"nats"`` or
  ``"accuracy"``).

:func:`build_task` validates the config (:func:`nprnn.configs.validate`) and reads its fields
directly: defaults live in :func:`nprnn.configs.base_config` only.

May import from nprnn: the package's public functions, ``nprnn.configs``, ``nprnn.data``,
``nprnn.gradient_flow`` (the critical gammas) and ``nprnn.models``. Reports go to absl logging.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

import nprnn
from nprnn import configs, gradient_flow
from nprnn import data as nd
from nprnn.configs import TASKS
from nprnn.models import charlm, draw, seqmnist

__all__ = ["TASKS", "Task", "build_task", "tree_has_nonfinite"]


@dataclasses.dataclass(frozen=True)
class Task:
    init: Callable
    train_batch: Callable[..., tuple]
    loss: Callable
    update_state: Callable
    evaluate: Callable
    steps_per_epoch: int
    metric: str
    # The batch axis of each array of a training batch (for data-parallel sharding).
    batch_axes: tuple[int, ...] = (0,)
    # Called with (params, consts, model_state, key) for a qualitative look (text or images).
    sample: Callable | None = None


def _cell_options(model, input_std: float = 1.0) -> dict:
    """Keyword arguments of ``nprnn.init_params`` from the model config.

    With ``model.gamma_init="critical"`` (normprop), gamma_h is chosen at the edge of stability
    (:func:`nprnn.gradient_flow.critical_gammas`: the per-step growth of the back-propagated
    gradient closest to 1, with gamma_x and gamma_c as configured), for inputs whose normalized
    projections have standard deviation ``input_std``.
    """
    opts = {}
    if configs.gammas_apply(model):
        opts = {
            name: float(model[name])
            for name in ("gamma_x", "gamma_h", "gamma_c")
            if model[name] is not None
        }
    opts["variance_method"] = model.variance_method
    opts["compensation"] = model.compensation
    opts["forget_bias"] = float(model.forget_bias)
    if model.gamma_init == "critical" and model.variant != "normprop":
        logging.warning(
            "gamma_init='critical' applies to normprop only; %s keeps its gammas", model.variant
        )
    elif model.gamma_init == "critical":
        default_x, _, default_c = nprnn.DEFAULT_GAMMAS["normprop"]
        found = gradient_flow.critical_gammas(
            opts.get("gamma_c", default_c),
            gamma_x=opts.get("gamma_x", default_x),
            config=gradient_flow.FlowConfig(
                input_std=input_std,
                variance_method=opts["variance_method"],
                compensation=opts["compensation"],
            ),
        )
        opts["gamma_x"], opts["gamma_h"], opts["gamma_c"] = found.gammas
        logging.info(
            "critical gammas (x, h, c) = (%.3f, %.3f, %.3f): gradient growth %.3f per step, "
            "Var[h] %.3f",
            found.gamma_x,
            found.gamma_h,
            found.gamma_c,
            found.growth,
            found.var_h,
        )
    return opts


def _epoch_rows(config, n: int, step: int, seed: int | None):
    """Example indices of training batch ``step``: shuffled epochs, a pure function of the step
    and the seed (``None``: ``config.seed``)."""
    seed = config.seed if seed is None else seed
    epoch, index = nd.epoch_and_index(step, n=n, batch_size=config.data.batch_size)
    return nd.minibatches(n, batch_size=config.data.batch_size, seed=seed, epoch=epoch)[index]


def _as_time_major(*arrays):
    return tuple(jnp.asarray(np.ascontiguousarray(a.T)) for a in arrays)


def _sum_batches(step: Callable, batches, names: tuple[str, ...], max_batches=None) -> dict:
    """Host-side sums of ``step(i, batch)[name]`` over the batches (at most ``max_batches``)."""
    sums = dict.fromkeys(names, 0.0)
    for i, batch in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        out = step(i, batch)
        for name in names:
            sums[name] += float(out[name])
    return sums


def _rows(n: int, batch_size: int):
    """The slices of the ``n // batch_size`` whole evaluation batches of a split (rest dropped)."""
    return (slice(i * batch_size, (i + 1) * batch_size) for i in range(n // batch_size))


def _bn_state_updater(update_bn: Callable, momentum: float) -> Callable:
    """``update_state`` of a model whose state is ``{"bn": statistics or None}``."""

    def update_state(model_state, moments):
        if moments["bn"] is None:
            return model_state
        return {"bn": update_bn(model_state["bn"], moments["bn"], momentum=momentum)}

    return update_state


def build_task(config) -> Task:
    """Builds the task named by ``config.task`` (one of :data:`TASKS`).

    Raises:
        ValueError: for a bad config (:func:`nprnn.configs.validate`: every problem listed).
        nprnn.data.DataError: when the data cannot be found (the message says what to put where).
    """
    configs.validate(config)
    builders = {
        "ptb_char": _char_task,
        "text8": _char_task,
        "draw": _draw_task,
        "seqmnist": _seqmnist_task,
    }
    return builders[config.task](config)


# ----------------------------------------------------------------------------------------------
# Character language models: PTB characters and text8.


def _char_task(config) -> Task:
    d, m = config.data, config.model
    if config.task == "ptb_char":
        corpus = nd.load_ptb_chars(d.dir or None, download=d.download, verify=d.verify)
    else:
        corpus = nd.load_text8(d.dir or None, download=d.download, verify=d.verify)
    model_config = charlm.CharLMConfig(
        variant=m.variant,
        vocab_size=len(corpus.vocab),
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        max_steps=d.seq_len,
        input_dropout=m.input_dropout,
        output_dropout=m.output_dropout,
        recurrent_dropout=m.recurrent_dropout,
        input_norm=m.input_norm,
        matmul_dtype=m.matmul_dtype or None,
        learn_initial_state=m.learn_initial_state,
    )

    # x_t is a row of an orthogonal [V, V] matrix: its components have std 1/sqrt(V); after
    # batch data normalization (input_norm) they have std 1.
    input_std = 1.0 if m.input_norm else 1.0 / math.sqrt(len(corpus.vocab))
    cell_options = _cell_options(m, input_std=input_std)

    def init(key):
        params, consts = charlm.init_charlm(key, model_config, **cell_options)
        return params, consts, charlm.init_charlm_state(consts)

    def train_batch(step, seed=None):
        seed = config.seed if seed is None else seed
        x, y = nd.random_windows(
            corpus.train, batch_size=d.batch_size, length=d.seq_len, seed=seed, step=step
        )
        return _as_time_major(x, y)

    def loss(params, consts, model_state, batch, key, training):
        inputs, targets, *mask = batch
        return charlm.charlm_loss(
            params,
            consts,
            model_state,
            inputs,
            targets,
            mask[0] if mask else None,
            training=training,
            key=key,
        )

    eval_loss = jax.jit(functools.partial(loss, key=None, training=False))

    @jax.jit
    def stream_loss(params, consts, model_state, states, t0, inputs, targets, mask):
        logits, states, _ = charlm.charlm_apply(
            params, consts, model_state, inputs, states=states, t0=t0, training=False
        )
        logp = jax.nn.log_softmax(logits.astype(jnp.float32))
        nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        return states, jnp.sum(nll * mask), jnp.sum(mask)

    def evaluate(params, consts, model_state, split, max_batches=None, protocol="windows"):
        ids = getattr(corpus, split)
        if protocol == "windows":
            batches = nd.eval_windows(ids, length=d.seq_len, batch_size=d.eval_batch_size)

            def step(i, batch):
                return eval_loss(params, consts, model_state, _as_time_major(*batch))[1]

        elif protocol == "stream":
            batches = nd.stream_batches(ids, batch_size=d.eval_streams, length=d.seq_len)
            states = charlm.initial_states(params, consts, d.eval_streams)

            def step(i, batch):
                # The state is carried across chunks, so is the time index (batchnorm rows).
                nonlocal states
                states, nll_sum, count = stream_loss(
                    params, consts, model_state, states, i * d.seq_len, *_as_time_major(*batch)
                )
                return {"nll_sum": nll_sum, "count": count}

        else:
            raise ValueError(f"unknown protocol {protocol!r}; expected 'windows' or 'stream'")
        sums = _sum_batches(step, batches, ("nll_sum", "count"), max_batches)
        nats = sums["nll_sum"] / max(sums["count"], 1.0)
        return {"loss": nats, "bpc": nats / math.log(2.0), "count": sums["count"]}

    def sample(params, consts, model_state, key, prompt=None, length=200):
        if prompt is None:  # "the ", or the training text's first character in a corpus without
            try:  # those characters (a user's own)
                corpus.encode("the ")
                prompt = "the "
            except ValueError:
                prompt = corpus.decode(corpus.train[:1])
        ids = charlm.charlm_sample(
            params, consts, model_state, jnp.asarray(corpus.encode(prompt)), key, length=length
        )
        return prompt + corpus.decode(np.asarray(ids))

    return Task(
        init=init,
        train_batch=train_batch,
        loss=loss,
        update_state=functools.partial(charlm.update_charlm_state, momentum=m.bn_momentum),
        evaluate=evaluate,
        steps_per_epoch=max(1, len(corpus.train) // (d.batch_size * d.seq_len)),
        metric="bpc",
        batch_axes=(1, 1),  # time-major [T, B] inputs and targets
        sample=sample,
    )


# ----------------------------------------------------------------------------------------------
# DRAW on binarized MNIST.


def _draw_task(config) -> Task:
    d, m = config.data, config.model
    images = nd.load_binarized_mnist(d.dir or None, download=d.download, verify=d.verify)
    n_train = len(images["train"])
    variant = m.variant

    def init(key):
        params, consts = draw.init_draw(
            key,
            variant=variant,
            hidden_size=m.hidden_size,
            latent_size=m.latent_size,
            glimpses=m.glimpses,
            read_n=m.read_n,
            write_n=m.write_n,
            weight_norm_linear=m.weight_norm_linear,
            learn_initial_state=m.learn_initial_state,
            **_cell_options(m),
        )
        state = {"bn": draw.init_draw_bn_stats(consts) if variant == "batchnorm" else None}
        return params, consts, state

    def train_batch(step, seed=None):
        return (jnp.asarray(images["train"][_epoch_rows(config, n_train, step, seed)]),)

    def loss(params, consts, model_state, batch, key, training):
        want = training and variant == "batchnorm"
        out = draw.draw_loss(
            params,
            consts,
            batch[0],
            key,
            training=training,
            bn_stats=model_state["bn"],
            return_moments=want,
        )
        value, aux = out
        metrics, moments = aux if want else (aux, None)
        count = jnp.asarray(batch[0].shape[0], jnp.float32)
        return value, {
            "nll_sum": value * count,
            "recon_sum": metrics["recon"] * count,
            "kl_sum": metrics["kl"] * count,
            "count": count,
            "moments": {"bn": moments},
        }

    @jax.jit
    def eval_step(params, consts, model_state, x, key):
        return loss(params, consts, model_state, (x,), key, False)[1]

    def evaluate(params, consts, model_state, split, max_batches=None, protocol=None):
        del protocol
        data = images[split]
        key = jax.random.key(config.seed + 1)  # a fixed key: the bound is a 1-sample estimate

        def step(i, rows):
            return eval_step(params, consts, model_state, data[rows], jax.random.fold_in(key, i))

        names = ("nll_sum", "recon_sum", "kl_sum", "count")
        sums = _sum_batches(step, _rows(len(data), d.eval_batch_size), names, max_batches)
        n = max(sums["count"], 1.0)
        return {
            "loss": sums["nll_sum"] / n,
            "nats": sums["nll_sum"] / n,
            "recon": sums["recon_sum"] / n,
            "kl": sums["kl_sum"] / n,
            "count": sums["count"],
        }

    def sample(params, consts, model_state, key, num=16):
        return draw.draw_sample(params, consts, key, num, bn_stats=model_state["bn"])

    return Task(
        init=init,
        train_batch=train_batch,
        loss=loss,
        update_state=_bn_state_updater(draw.update_draw_bn_stats, m.bn_momentum),
        evaluate=evaluate,
        steps_per_epoch=n_train // d.batch_size,
        metric="nats",
        sample=sample,
    )


# ----------------------------------------------------------------------------------------------
# Sequential (optionally permuted) pixel MNIST.


def _seqmnist_task(config) -> Task:
    d, m = config.data, config.model
    raw = nd.load_mnist(d.dir or None, download=d.download, verify=d.verify)
    perm = nd.pixel_permutation(d.permutation_seed) if d.permute else None
    splits = {
        k: (nd.pixel_sequences(x, permutation=perm), y.astype(np.int32))
        for k, (x, y) in raw.items()
    }
    n_train = len(splits["train"][1])
    model_config = seqmnist.SeqMNISTConfig(
        variant=m.variant, hidden_size=m.hidden_size, learn_initial_state=m.learn_initial_state
    )

    def init(key):
        params, consts = seqmnist.init_seqmnist(key, model_config, **_cell_options(m))
        return params, consts, seqmnist.init_seqmnist_state(consts)

    def train_batch(step, seed=None):
        rows = _epoch_rows(config, n_train, step, seed)
        x, y = splits["train"]
        return jnp.asarray(x[rows]), jnp.asarray(y[rows])

    def loss(params, consts, model_state, batch, key, training):
        del key
        return seqmnist.seqmnist_loss(params, consts, model_state, *batch, training=training)

    eval_loss = jax.jit(functools.partial(loss, key=None, training=False))

    def evaluate(params, consts, model_state, split, max_batches=None, protocol=None):
        del protocol
        x, y = splits[split]

        def step(i, rows):
            return eval_loss(params, consts, model_state, (x[rows], y[rows]))[1]

        names = ("nll_sum", "correct", "count")
        sums = _sum_batches(step, _rows(len(y), d.eval_batch_size), names, max_batches)
        n = max(sums["count"], 1.0)
        return {"loss": sums["nll_sum"] / n, "accuracy": sums["correct"] / n, "count": n}

    return Task(
        init=init,
        train_batch=train_batch,
        loss=loss,
        update_state=_bn_state_updater(nprnn.update_bn_stats, m.bn_momentum),
        evaluate=evaluate,
        steps_per_epoch=n_train // d.batch_size,
        metric="accuracy",
        batch_axes=(0, 0),
    )


def tree_has_nonfinite(tree: Any) -> bool:
    """True if any floating leaf of ``tree`` holds a NaN or an Inf (host-side check)."""
    leaves = [
        x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
    ]
    return any(not bool(jnp.all(jnp.isfinite(x))) for x in leaves)
