r"""Wall-clock time of one training step and one forward pass of every nprnn LSTM variant.

The model is one LSTM layer with a dense softmax head on its outputs, as in the paper's
character-level PTB setup: ``logits = hs @ W_out`` ([H, V], no bias), mean cross-entropy against
random integer targets. For each size (H, D, B, T) and each model it measures:

* ``train``: ``jax.value_and_grad`` of that loss with respect to all trainable parameters
  (the LSTM's and ``W_out``), jitted; forward and backward through time. By default no optimizer
  update (``--optimizer=none``); ``--optimizer=adam`` adds an ``optax.adam`` update and its
  application to the step. batchnorm runs in training mode (batch statistics of every step).
* ``infer``: the forward pass to the logits, jitted. batchnorm runs in inference mode with
  population statistics (``nprnn.init_bn_stats`` with ``max_steps = T``).

The models are the variants of :data:`nprnn.VARIANTS` (``nprnn.run_sequence``), each also with
mixed-precision matrix products as ``<variant>@<dtype>`` (e.g. ``normprop@bfloat16``: the
``matmul_dtype`` of ``run_sequence``; state, gates and head stay float32), and, for
comparison, flax's ``nn.RNN(nn.OptimizedLSTMCell(H))`` with the same head (``flax_lstm``), plus
PyTorch's ``nn.LSTM`` with ``nn.Linear`` (``torch_lstm``, eager; cuDNN when JAX runs on a GPU
and torch sees CUDA, else CPU) when ``torch`` can be imported (an optional dependency, never
required; ``--torch_threads``, default 1, sets its CPU intra-op threads, while XLA uses every
core).

Timing: compile and ``--warmup`` calls are excluded; then ``--repeats`` rounds, each of which
times one call of every model in turn (round-robin, so that a change of machine load hits all
models alike) right after ``--untimed_before`` untimed calls of the same model (as in a training
loop, and so that the previous model's threads, e.g. torch's spinning OpenMP workers, are out of
the way), each call ended by ``jax.block_until_ready``.
By default the process first calls :func:`nprnn.tune_host_allocator` (``--tune_allocator``),
which spares every model (torch too) the page faults of fresh buffers at each call. Reported:
median and interquartile range in ms, the ratio of the median to the ``lstm`` variant's, and the
achieved GFLOP/s of the matmuls (forward ``2 T B (D + H) 4H + 2 T B H V``, a training step taken
as 3x the forward) as a fraction of the machine's float32 matmul rate measured at the start on a
large ``jnp.dot`` (the best of 7 samples, since other jobs can only slow it down).

Usage:
  .venv/bin/python benchmarks/step_time.py --sizes=1000x50x32x100,256x50x128x64 \
      --repeats=10 --json_out=/tmp/step_time.json

  With torch from a separate environment, e.g. ``pip install --target /tmp/torch_pkgs
  torch==2.13.0`` and a venv whose ``.pth`` adds ``.venv``'s site-packages and /tmp/torch_pkgs,
  run the same command with that venv's python.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

import nprnn

VOCAB = 50  # V, the size of the softmax head (the PTB character alphabet).
FLAX = "flax_lstm"
TORCH = "torch_lstm"


def _parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1")


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line.

    Args:
      argv: arguments (without the program name); ``None`` reads ``sys.argv``.

    Returns:
      The parsed flags.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default="1000x50x32x100,256x50x128x64",
        help="comma-separated HxDxBxT sizes",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per model (>= 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
    parser.add_argument(
        "--variants",
        default=",".join((*nprnn.VARIANTS, FLAX, TORCH)),
        help=f"comma-separated models among {(*nprnn.VARIANTS, FLAX, TORCH)}, and "
        "<variant>@<dtype> (e.g. normprop@bfloat16) for an nprnn variant with mixed-precision "
        f"matmuls; {TORCH} is skipped when torch is not importable",
    )
    parser.add_argument("--modes", default="train,infer", help="comma-separated: train, infer")
    parser.add_argument(
        "--optimizer", choices=("none", "adam"), default="none", help="update in the train step"
    )
    parser.add_argument("--vocab", type=int, default=VOCAB, help="V, the softmax size")
    parser.add_argument(
        "--torch_threads",
        type=int,
        default=1,
        help="torch.set_num_threads for torch_lstm (0: torch's default). On the 2-core VM of "
        "BENCHMARKS.md, 2 threads made a train step 25x slower than 1 (OpenMP contention)",
    )
    parser.add_argument(
        "--untimed_before",
        type=int,
        default=1,
        help="untimed calls of the same model right before each timed call",
    )
    parser.add_argument(
        "--tune_allocator",
        type=_parse_bool,
        default=True,
        help="call nprnn.tune_host_allocator() first (true/false): freed memory is reused "
        "instead of page-faulted afresh at every call; applies to torch too",
    )
    parser.add_argument("--matmul_size", type=int, default=4096, help="N of the N x N peak dot")
    parser.add_argument("--json_out", default="", help="write all results to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def parse_sizes(text: str) -> list[tuple[int, int, int, int]]:
    """Parses ``"HxDxBxT,HxDxBxT"`` into a list of (H, D, B, T) tuples.

    Raises:
      ValueError: for a malformed size.
    """
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"a size must be HxDxBxT with positive integers, got {item!r}")
        sizes.append(tuple(int(p) for p in parts))
    return sizes


# ----------------------------------------------------------------------------------------------
# Flop counts and the machine's matmul rate.


def forward_flops(hidden: int, inputs: int, batch: int, steps: int, vocab: int) -> float:
    """Matmul flops of one forward pass: the four gates' projections and the head."""
    return (
        2.0 * steps * batch * (inputs + hidden) * 4 * hidden + 2.0 * steps * batch * hidden * vocab
    )


def measure_matmul_gflops(m: int, k: int, n: int, repeats: int = 7) -> float:
    """Best float32 GFLOP/s of a jitted ``[m, k] @ [k, n]`` ``jnp.dot`` over ``repeats`` samples.

    The best sample, not the median: on a shared machine the other jobs only ever slow it down,
    and this number is meant as the machine's capability.
    """
    ka, kb = jax.random.split(jax.random.key(123))
    a = jax.random.normal(ka, (m, k), jnp.float32)
    b = jax.random.normal(kb, (k, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    inner = max(1, int(2e9 // (2 * m * k * n)))  # about 2 GFLOP per timed sample
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = dot(a, b)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / inner)
    return 2.0 * m * k * n / float(np.min(times)) / 1e9


# ----------------------------------------------------------------------------------------------
# The models. Each builder returns {"train": fn, "infer": fn}, argument-free callables whose
# result can be passed to jax.block_until_ready (all arrays are jit arguments, not constants).


def _cross_entropy(logits, targets):
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def _with_optimizer(loss_fn, params, optimizer: str):
    """A jitted train step: value_and_grad, plus an Adam update when asked."""
    grad_fn = jax.value_and_grad(loss_fn)
    if optimizer == "none":
        return jax.jit(grad_fn), None
    tx = optax.adam(2e-3)

    def step(params, opt_state, *args):
        loss, grads = grad_fn(params, *args)
        updates, opt_state = tx.update(grads, opt_state, params)
        return loss, optax.apply_updates(params, updates), opt_state

    return jax.jit(step), tx.init(params)


def check_float_dtype(name: str) -> str:
    """Returns ``name`` if it names a floating-point dtype (``"bfloat16"``), else raises
    ValueError."""
    try:
        floating = jnp.issubdtype(jnp.dtype(name), jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise ValueError(f"{name!r} is not a floating-point dtype name")
    return name


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

    step, opt_state = _with_optimizer(loss_fn, trainable, optimizer)
    args = (consts, state, data["xs"], data["targets"])
    if opt_state is None:
        train = lambda: step(trainable, *args)  # noqa: E731
    else:
        train = lambda: step(trainable, opt_state, *args)  # noqa: E731
    return {
        "train": train,
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
    step, opt_state = _with_optimizer(loss_fn, params, optimizer)
    args = (data["xs"], data["targets"])
    if opt_state is None:
        train = lambda: step(params, *args)  # noqa: E731
    else:
        train = lambda: step(params, opt_state, *args)  # noqa: E731
    return {"train": train, "infer": lambda: infer(params, data["xs"])}


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


def torch_available() -> bool:
    """Whether ``import torch`` works."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Measurement.


def time_round_robin(calls: dict, repeats: int, warmup: int, untimed_before: int = 0):
    """Times zero-argument functions in turn, so that a change of machine load hits all alike.

    Args:
      calls: ``{name: fn}``; each ``fn()`` returns JAX arrays (or None), waited for with
        ``jax.block_until_ready``.
      repeats: rounds; each times one call of every function.
      warmup: untimed calls of each function after its first (compiling) call.
      untimed_before: untimed calls of a function right before each of its timed calls.

    Returns:
      ``{name: [seconds, ...]}`` and ``{name: seconds of the compiling and warm-up calls}``.
    """
    setup = {}
    for name, fn in calls.items():
        start = time.perf_counter()
        for _ in range(1 + warmup):  # the first call compiles
            jax.block_until_ready(fn())
        setup[name] = time.perf_counter() - start
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            for _ in range(untimed_before):
                jax.block_until_ready(fn())
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return times, setup


def benchmark_size(size, models, modes, args):
    """Times every model and mode at one size, round-robin over the models.

    Args:
      size: (H, D, B, T).
      models: model names.
      modes: "train" and/or "infer".
      args: parsed flags.

    Returns:
      ``{(model, mode): [seconds, ...]}`` and ``{(model, mode): compile_and_warmup_seconds}``.
    """
    hidden, inputs, batch, steps = size
    key_x, key_t, key_p = jax.random.split(jax.random.key(args.seed), 3)
    data = {
        "xs": jax.random.normal(key_x, (steps, batch, inputs), jnp.float32),
        "targets": jax.random.randint(key_t, (steps, batch), 0, args.vocab),
        "key": key_p,
    }
    calls = {}
    for model in models:
        name, matmul_dtype = parse_model(model)
        if name == FLAX:
            fns = build_flax(size, data, args.optimizer, args.vocab)
        elif name == TORCH:
            fns = build_torch(size, data, args.optimizer, args.vocab, args.torch_threads)
        else:
            fns = build_nprnn(name, size, data, args.optimizer, args.vocab, matmul_dtype)
        for mode in modes:
            calls[(model, mode)] = fns[mode]
    # Each timed call right after an untimed call of the same model: a training loop calls the
    # same step back to back, and the previous model's threads (torch's OpenMP workers spin after
    # a parallel region) no longer compete with the timed call.
    return time_round_robin(calls, args.repeats, args.warmup, args.untimed_before)


def summarize(size, times, setup, peak_gflops, vocab):
    """Per (model, mode): median / quartiles in ms, ratio to lstm, GFLOP/s and fraction of peak."""
    flops = forward_flops(*size, vocab)
    rows = []
    for (model, mode), ts in times.items():
        ms = 1e3 * np.asarray(ts)
        median = float(np.median(ms))
        work = flops * (3.0 if mode == "train" else 1.0)
        gflops = work / (median / 1e3) / 1e9
        rows.append(
            {
                "size": list(size),
                "model": model,
                "mode": mode,
                "median_ms": median,
                "q25_ms": float(np.percentile(ms, 25)),
                "q75_ms": float(np.percentile(ms, 75)),
                "min_ms": float(ms.min()),
                "repeats": len(ts),
                "compile_and_warmup_s": setup[(model, mode)],
                "gflop": work / 1e9,
                "gflops": gflops,
                "fraction_of_peak": gflops / peak_gflops,
            }
        )
    for row in rows:
        base = times.get(("lstm", row["mode"]))
        row["ratio_to_lstm"] = (
            row["median_ms"] / float(np.median(1e3 * np.asarray(base))) if base else None
        )
    return rows


def markdown_table(rows, modes) -> str:
    """One line per model: ms (IQR) and ratio to lstm per mode, and GFLOP/s."""
    header = ["model"]
    for mode in modes:
        header += [f"{mode} ms (IQR)", f"{mode} / lstm", f"{mode} GFLOP/s (% peak)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["mode"]] = row
    for model, per_mode in by_model.items():
        cells = [model]
        for mode in modes:
            r = per_mode.get(mode)
            if r is None:
                cells += ["-", "-", "-"]
                continue
            ratio = "-" if r["ratio_to_lstm"] is None else f"{r['ratio_to_lstm']:.2f}"
            cells += [
                f"{r['median_ms']:.1f} ({r['q25_ms']:.1f}-{r['q75_ms']:.1f})",
                ratio,
                f"{r['gflops']:.1f} ({100 * r['fraction_of_peak']:.0f}%)",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> dict:
    """Date, machine and library versions."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    env = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
    }
    if torch_available():
        import torch

        env["torch"] = torch.__version__
        env["torch_default_threads"] = torch.get_num_threads()
    return env


def main(argv=None) -> None:
    """Runs the benchmark and prints the tables."""
    args = parse_args(argv)
    try:  # bad flags: one line naming the problem, not a traceback
        if args.repeats < 1:
            raise ValueError("--repeats must be >= 1")
        sizes = parse_sizes(args.sizes)
        modes = [m.strip() for m in args.modes.split(",")]
        if not set(modes) <= {"train", "infer"}:
            raise ValueError(f"--modes must be among train, infer; got {modes}")
        models = [m.strip() for m in args.variants.split(",")]
        for model in models:
            parse_model(model)
    except ValueError as e:
        raise SystemExit(f"step_time.py: error: {e}") from None
    if TORCH in models and not torch_available():
        print(f"torch is not importable: skipping {TORCH}")
        models.remove(TORCH)
    if "lstm" not in models:
        print("note: lstm is not among the models, so there are no ratios to it")

    tuned = nprnn.tune_host_allocator() if args.tune_allocator else False
    env = environment()  # (initializes JAX's backend: after the allocator settings)
    env["tune_allocator"] = tuned
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    print(f"optimizer in the train step: {args.optimizer}; head V = {args.vocab}")
    n = args.matmul_size
    peak = measure_matmul_gflops(n, n, n)
    print(f"float32 matmul rate ({n}^2 jnp.dot, best of 7): {peak:.1f} GFLOP/s")
    results = []
    for size in sizes:
        start = time.perf_counter()
        times, setup = benchmark_size(size, models, modes, args)
        rows = summarize(size, times, setup, peak, args.vocab)
        results += rows
        hidden, inputs, batch, steps = size
        step_rate = measure_matmul_gflops(batch, hidden, 4 * hidden)
        env.setdefault("step_matmul_gflops", {})[str(size)] = step_rate
        print(
            f"\n(H, D, B, T) = ({hidden}, {inputs}, {batch}, {steps}); the recurrent matmul "
            f"[B, H] @ [H, 4H] alone runs at {step_rate:.1f} GFLOP/s "
            f"({100 * step_rate / peak:.0f}% of peak); forward "
            f"{forward_flops(*size, args.vocab) / 1e9:.2f} GFLOP, train step 3x; "
            f"median of {args.repeats}; {time.perf_counter() - start:.0f} s in all; "
            f"load average now {os.getloadavg()[0]:.2f}\n"
        )
        print(markdown_table(rows, modes))
    env["loadavg_end"] = os.getloadavg()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(
                {"env": env, "flags": vars(args), "peak_gflops": peak, "results": results},
                f,
                indent=1,
            )
        print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
