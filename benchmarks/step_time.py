r"""Wall-clock time of a training step and a forward pass of every model; imports harness, models.

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

The timing, the flag values and the environment line come from ``harness.py``, the models from
``models.py``; this file is the command line, the per-size loop and the table.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import nprnn

# benchmarks/ is sys.path[0] when this file runs as a script, so its modules import as top-level.
import harness
import models

VOCAB = 50  # V, the size of the softmax head (the PTB character alphabet).
FLAX, TORCH = models.FLAX, models.TORCH


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    harness.add_size_flags(parser, "1000x50x32x100,256x50x128x64")
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
        type=harness.parse_bool,
        default=True,
        help="call nprnn.tune_host_allocator() first (true/false): freed memory is reused "
        "instead of page-faulted afresh at every call; applies to torch too",
    )
    parser.add_argument("--matmul_size", type=int, default=4096, help="N of the N x N peak dot")
    harness.add_output_flags(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def benchmark_size(size, model_names, modes, args):
    """Times every model and mode at one size, round-robin over the models.

    Args:
      size: (H, D, B, T).
      model_names: model names (see :func:`models.parse_model`).
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
    for model in model_names:
        name, matmul_dtype = models.parse_model(model)
        if name == FLAX:
            fns = models.build_flax(size, data, args.optimizer, args.vocab)
        elif name == TORCH:
            fns = models.build_torch(size, data, args.optimizer, args.vocab, args.torch_threads)
        else:
            fns = models.build_nprnn(name, size, data, args.optimizer, args.vocab, matmul_dtype)
        for mode in modes:
            calls[(model, mode)] = fns[mode]
    # Each timed call right after an untimed call of the same model: a training loop calls the
    # same step back to back, and the previous model's threads (torch's OpenMP workers spin after
    # a parallel region) no longer compete with the timed call.
    return harness.time_round_robin(calls, args.repeats, args.warmup, args.untimed_before)


def summarize(size, times, setup, peak_gflops, vocab):
    """Per (model, mode): median / quartiles in ms, ratio to lstm, GFLOP/s and fraction of peak."""
    flops = models.forward_flops(*size, vocab)
    rows = []
    for (model, mode), ts in times.items():
        median, q25, q75 = harness.quartiles_ms(ts)
        work = flops * (3.0 if mode == "train" else 1.0)
        gflops = work / (median / 1e3) / 1e9
        rows.append(
            {
                "size": list(size),
                "model": model,
                "mode": mode,
                "median_ms": median,
                "q25_ms": q25,
                "q75_ms": q75,
                "min_ms": float(1e3 * np.min(ts)),
                "repeats": len(ts),
                "compile_and_warmup_s": setup[(model, mode)],
                "gflop": work / 1e9,
                "gflops": gflops,
                "fraction_of_peak": gflops / peak_gflops,
            }
        )
    for row in rows:
        base = times.get(("lstm", row["mode"]))
        row["ratio_to_lstm"] = row["median_ms"] / harness.quartiles_ms(base)[0] if base else None
    return rows


def markdown_table(rows, modes) -> str:
    """One line per model: ms (IQR) and ratio to lstm per mode, and GFLOP/s."""
    header = ["model"]
    for mode in modes:
        header += [f"{mode} ms (IQR)", f"{mode} / lstm", f"{mode} GFLOP/s (% peak)"]
    lines = [harness.markdown_row(header), harness.markdown_rule(len(header))]
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
                harness.format_ms(r["median_ms"], r["q25_ms"], r["q75_ms"]),
                ratio,
                f"{r['gflops']:.1f} ({100 * r['fraction_of_peak']:.0f}%)",
            ]
        lines.append(harness.markdown_row(cells))
    return "\n".join(lines)


def main(argv=None) -> None:
    """Runs the benchmark and prints the tables."""
    args = parse_args(argv)
    try:  # bad flags: one line naming the problem, not a traceback
        if args.repeats < 1:
            raise ValueError("--repeats must be >= 1")
        sizes = harness.parse_sizes(args.sizes)
        modes = [m.strip() for m in args.modes.split(",")]
        if not set(modes) <= {"train", "infer"}:
            raise ValueError(f"--modes must be among train, infer; got {modes}")
        model_names = [m.strip() for m in args.variants.split(",")]
        for model in model_names:
            models.parse_model(model)
    except ValueError as e:
        raise SystemExit(f"step_time.py: error: {e}") from None
    if TORCH in model_names and not harness.torch_available():
        print(f"torch is not importable: skipping {TORCH}")
        model_names.remove(TORCH)
    if "lstm" not in model_names:
        print("note: lstm is not among the models, so there are no ratios to it")

    tuned = nprnn.tune_host_allocator() if args.tune_allocator else False
    env = harness.environment()  # (initializes JAX's backend: after the allocator settings)
    env["tune_allocator"] = tuned
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    print(f"optimizer in the train step: {args.optimizer}; head V = {args.vocab}")
    n = args.matmul_size
    peak = harness.measure_matmul_gflops(n, n, n)
    print(f"float32 matmul rate ({n}^2 jnp.dot, best of 7): {peak:.1f} GFLOP/s")
    results = []
    for size in sizes:
        start = time.perf_counter()
        times, setup = benchmark_size(size, model_names, modes, args)
        rows = summarize(size, times, setup, peak, args.vocab)
        results += rows
        hidden, inputs, batch, steps = size
        step_rate = harness.measure_matmul_gflops(batch, hidden, 4 * hidden)
        env.setdefault("step_matmul_gflops", {})[str(size)] = step_rate
        print(
            f"\n(H, D, B, T) = ({hidden}, {inputs}, {batch}, {steps}); the recurrent matmul "
            f"[B, H] @ [H, 4H] alone runs at {step_rate:.1f} GFLOP/s "
            f"({100 * step_rate / peak:.0f}% of peak); forward "
            f"{models.forward_flops(*size, args.vocab) / 1e9:.2f} GFLOP, train step 3x; "
            f"median of {args.repeats}; {time.perf_counter() - start:.0f} s in all; "
            f"load average now {os.getloadavg()[0]:.2f}\n"
        )
        print(markdown_table(rows, modes))
    env["loadavg_end"] = os.getloadavg()
    if args.json_out:
        harness.write_json(
            args.json_out,
            {"env": env, "flags": vars(args), "peak_gflops": peak, "results": results},
        )
        print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
