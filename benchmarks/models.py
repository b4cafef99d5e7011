"""The LSTM models that step_time.py times; imports nprnn, harness, jax, flax, optax, torch lazily.

Every model is one LSTM layer with a dense softmax head on its outputs, ``logits = hs @ W_out``
([H, V], no bias), and a mean cross-entropy against integer targets. Each builder returns
``{"train": fn, "infer": fn}``, argument-free callables whose result can be passed to
``jax.block_until_ready`` (all arrays are jit arguments, not constants). A model is named by
:func:`parse_model`: an nprnn variant, optionally ``<variant>@<dtype>`` for mixed-precision
matmuls, :data:`FLAX` or :data:`TORCH`. :func:`forward_flops` counts the matmul work of one
forward pass. :func:`train_call` makes the timed train step of any loss (``flax_layers.py`` uses
it for the Flax modules).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import numpy as np
import optax

import nprnn

from harness import check_float_dtype  # benchmarks/ is sys.path[0] when a script there runs

FLAX = "flax_lstm"
TORCH = "torch_lstm"


def parse_model(name: str) -> tuple[str, str | None]:
    """``"normprop@bfloat16"`` -> ``("normprop", "bfloat16")``; ``"lstm"`` -> ``("lstm", None)``.

    Raises:
      ValueError: an unknown model, a dtype suffix on flax or torch, or a dtype that is not a
        floating-point type.
    """
    model, _, dtype = name.partition("@")
    if model not in (*nprnn.VARIANTS, FLAX, TORCH):
        raise ValueError(
            f"unknown model {name!r}; expected one of {(*nprnn.VARIANTS, FLAX, TORCH)}"
        )
    if not dtype:
        return model, None
    if model not in nprnn.VARIANTS:
        raise ValueError(f"{name!r}: a matmul dtype only applies to the nprnn variants")
    try:
        return model, check_float_dtype(dtype)
    except ValueError as e:
        raise ValueError(f"{name!r}: {e}") from None


def forward_flops(hidden: int, inputs: int, batch: int, steps: int, vocab: int) -> float:
    """Matmul flops of one forward pass: the four gates' projections and the head."""
    return (
        2.0 * steps * batch * (inputs + hidden) * 4 * hidden + 2.0 * steps * batch * hidden * vocab
    )


def _cross_entropy(logits, targets):
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def train_call(loss_fn, params, optimizer: str, args):
    """A zero-argument call of the jitted train step at ``params`` and ``args``.

    The step is ``jax.value_and_grad(loss_fn)``, plus an ``optax.adam`` update and its
    application when ``optimizer`` is ``"adam"``.
    """
    grad_fn = jax.value_and_grad(loss_fn)
    if optimizer == "none":
        step = jax.jit(grad_fn)
        return lambda: step(params, *args)
    tx = optax.adam(2e-3)

    @jax.jit
    def adam_step(params, opt_state, *args):
        loss, grads = grad_fn(params, *args)
        updates, opt_state = tx.update(grads, opt_state, params)
        return loss, optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    return lambda: adam_step(params, opt_state, *args)


def build_nprnn(variant, size, data, optimizer, vocab, matmul_dtype=None):
    """Train and inference callables for one nprnn variant.

    Args:
      variant: one of :data:`nprnn.VARIANTS`.
      size: (H, D, B, T).
      data: dict with ``xs`` [T, B, D], ``targets`` [T, B] and ``key``.
      optimizer: "none" or "adam".
      vocab: V.
      matmul_dtype: ``run_sequence``'s mixed-precision dtype name (None: float32 throughout).

    Returns:
      ``{"train": callable, "infer": callable}``.
    """
    hidden, inputs, batch, steps = size
    key_lstm, key_out = jax.random.split(data["key"])
    params, consts = nprnn.init_params(
        key_lstm, input_size=inputs, hidden_size=hidden, variant=variant
    )
    trainable = {
        "lstm": params,
        "w_out": jax.random.normal(key_out, (hidden, vocab)) / np.sqrt(hidden),
    }
    state = nprnn.init_state(batch, hidden)
    bn_stats = nprnn.init_bn_stats(hidden, steps) if variant == "batchnorm" else None
    run = functools.partial(nprnn.run_sequence, variant=variant, matmul_dtype=matmul_dtype)

    def loss_fn(p, consts, state, xs, targets):
        _, hs = run(p["lstm"], consts, state, xs, training=True)
        return _cross_entropy(hs @ p["w_out"], targets)

    @jax.jit
    def infer(p, consts, state, xs, bn_stats):
        _, hs = run(p["lstm"], consts, state, xs, training=False, bn_stats=bn_stats)
        return hs @ p["w_out"]

    args = (consts, state, data["xs"], data["targets"])
    return {
        "train": train_call(loss_fn, trainable, optimizer, args),
        "infer": lambda: infer(trainable, consts, state, data["xs"], bn_stats),
    }


class _FlaxModel(nn.Module):
    """flax's optimized LSTM cell, scanned over time-major inputs, with the same dense head."""

    hidden: int
    vocab: int

    @nn.compact
    def __call__(self, xs):
        hs = nn.RNN(nn.OptimizedLSTMCell(self.hidden), time_major=True)(xs)
        return nn.Dense(self.vocab, use_bias=False)(hs)


def build_flax(size, data, optimizer, vocab):
    """Train and inference callables for ``nn.RNN(nn.OptimizedLSTMCell(H))`` + head."""
    hidden = size[0]
    model = _FlaxModel(hidden, vocab)
    params = model.init(data["key"], data["xs"])

    def loss_fn(p, xs, targets):
        return _cross_entropy(model.apply(p, xs), targets)

    infer = jax.jit(model.apply)
    return {
        "train": train_call(loss_fn, params, optimizer, (data["xs"], data["targets"])),
        "infer": lambda: infer(params, data["xs"]),
    }


def build_torch(size, data, optimizer, vocab, threads=1):
    """Train and inference callables for PyTorch's ``nn.LSTM`` + ``nn.Linear`` (eager).

    On CUDA (cuDNN's LSTM) when JAX runs on a GPU and torch sees one, else on the CPU. Each call
    ends with ``torch.cuda.synchronize()`` on CUDA, so the timer sees the finished work.

    Args:
      size: (H, D, B, T).
      data: dict with ``xs`` [T, B, D] and ``targets`` [T, B].
      optimizer: "none" or "adam" (``torch.optim.Adam``).
      vocab: V.
      threads: > 0 sets ``torch.set_num_threads`` (CPU intra-op threads); 0 keeps the default.

    Returns:
      ``{"train": callable, "infer": callable}``.
    """
    import torch  # optional dependency

    hidden, inputs, _, _ = size
    cuda = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(inputs, hidden).to(device)  # time-major by default
    head = torch.nn.Linear(hidden, vocab, bias=False).to(device)
    xs = torch.from_numpy(np.array(data["xs"])).to(device)  # np.array: a writable copy
    targets = torch.from_numpy(np.asarray(data["targets"]).astype(np.int64)).to(device)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3) if optimizer == "adam" else None
    loss_fn = torch.nn.CrossEntropyLoss()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def train():
        for p in params:
            p.grad = None
        hs, _ = lstm(xs)
        loss = loss_fn(head(hs).reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        if opt is not None:
            opt.step()
        sync()

    def infer():
        with torch.inference_mode():
            hs, _ = lstm(xs)
            head(hs)
        sync()

    return {"train": train, "infer": infer}
