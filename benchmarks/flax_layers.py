r"""Training-step time of the Flax modules against run_sequence and flax's own LSTM; imports
nprnn, nprnn.linen, nprnn.nnx, harness, models.

Every model is one LSTM layer over time-major inputs [T, B, D] with a dense softmax head
(``logits = hs @ W_out``, [H, V], no bias) and a mean cross-entropy, as in ``step_time.py``; the
timed call is the jitted ``jax.value_and_grad`` of that loss with respect to all trainable
parameters (``--optimizer=adam`` adds an ``optax.adam`` update). The models:

* ``run_sequence``: the functional core, ``nprnn.run_sequence`` (``models.build_nprnn``);
* ``linen LSTM``: ``nprnn.linen.LSTM(nprnn.linen.LSTMCell(H, variant), time_major=True)`` and
  ``nn.Dense`` (the sequence layer: one ``run_sequence`` call);
* ``nnx LSTM``: ``nprnn.nnx.LSTM`` and ``nnx.Linear``, differentiated through
  ``nnx.split`` / ``nnx.merge`` inside ``jax.jit`` (no per-call graph traversal in the timing);
* ``nn.RNN(cell)``: ``nn.RNN(cell, **nprnn.linen.rnn_options(cell))`` of
  ``cell = nprnn.linen.LSTMCell(H, variant)``: the cell in flax's scan
  (weight normalization at every step, autodiff of the scan);
* ``flax_lstm``: ``nn.RNN(nn.OptimizedLSTMCell(H))``, flax's own (``models.build_flax``).

Timing as in ``step_time.py`` (``harness.time_round_robin``: compile and ``--warmup`` calls
excluded, ``--repeats`` rounds, one call of every model per round, each right after an untimed
call of the same model; the allocator tuned). Reported: median and interquartile range in ms and
the ratio of each median to ``run_sequence``'s.

Usage:
  .venv/bin/python benchmarks/flax_layers.py --sizes=256x50x128x64,1000x50x32x100 --repeats=10
"""

from __future__ import annotations

import argparse
import os

import flax.linen as nn
import jax
import optax
from flax import nnx

import nprnn
import nprnn.linen
import nprnn.nnx

# benchmarks/ is sys.path[0] when this file runs as a script, so its modules import as top-level.
import harness
import models

CORE, LINEN, NNX, RNN_CELL = "run_sequence", "linen LSTM", "nnx LSTM", "nn.RNN(cell)"
MODELS = (CORE, LINEN, NNX, RNN_CELL, models.FLAX)


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = harness.flag_parser(__doc__)
    harness.add_size_flags(parser, "256x50x128x64,1000x50x32x100")
    parser.add_argument("--variant", default="normprop", help="the nprnn variant")
    parser.add_argument("--models", default=",".join(MODELS), help=f"among {MODELS}")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after compiling")
    parser.add_argument(
        "--optimizer", choices=("none", "adam"), default="none", help="update in the train step"
    )
    parser.add_argument("--vocab", type=int, default=50, help="V, the softmax size")
    harness.add_output_flags(parser)
    return parser.parse_args(argv)


class _LinenModel(nn.Module):
    """The linen sequence layer (or ``nn.RNN`` of the cell) with the dense head."""

    hidden: int
    vocab: int
    variant: str
    layer: str

    @nn.compact
    def __call__(self, xs):
        cell = nprnn.linen.LSTMCell(self.hidden, self.variant, max_steps=xs.shape[0])
        if self.layer == LINEN:
            rnn = nprnn.linen.LSTM(cell, time_major=True)
        else:
            rnn = nn.RNN(cell, time_major=True, **nprnn.linen.rnn_options(cell))
        return nn.Dense(self.vocab, use_bias=False)(rnn(xs))


class _NnxModel(nnx.Module):
    """The nnx sequence module with the dense head."""

    def __init__(self, size, vocab: int, variant: str, rngs: nnx.Rngs):
        hidden, inputs, _, steps = size
        cell = nprnn.nnx.LSTMCell(inputs, hidden, variant=variant, max_steps=steps, rngs=rngs)
        self.lstm = nprnn.nnx.LSTM(cell, time_major=True)
        self.head = nnx.Linear(hidden, vocab, use_bias=False, rngs=rngs)

    def __call__(self, xs):
        return self.head(self.lstm(xs))


def _cross_entropy(logits, targets):
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def build(model: str, size, data, args) -> callable:
    """The zero-argument train call of one model (see the module docstring)."""
    xs, targets = data["xs"], data["targets"]
    if model == CORE:
        return models.build_nprnn(args.variant, size, data, args.optimizer, args.vocab)["train"]
    if model == models.FLAX:
        return models.build_flax(size, data, args.optimizer, args.vocab)["train"]
    if model == NNX:
        graphdef, params, rest = nnx.split(
            _NnxModel(size, args.vocab, args.variant, nnx.Rngs(0)), nnx.Param, ...
        )

        def loss_fn(p, xs, targets):
            return _cross_entropy(nnx.merge(graphdef, p, rest, copy=True)(xs), targets)

        return models.train_call(loss_fn, params, args.optimizer, (xs, targets))
    linen_model = _LinenModel(size[0], args.vocab, args.variant, model)
    variables = linen_model.init(data["key"], xs)
    params = variables["params"]

    def linen_loss(p, xs, targets):
        return _cross_entropy(linen_model.apply({**variables, "params": p}, xs), targets)

    return models.train_call(linen_loss, params, args.optimizer, (xs, targets))


def main(argv=None) -> None:
    """Runs the benchmark and prints one table per size."""
    args = parse_args(argv)
    names = [m.strip() for m in args.models.split(",")]
    try:  # bad flags: one line naming the problem, not a traceback
        if args.repeats < 1:
            raise ValueError("--repeats must be >= 1")
        sizes = harness.parse_sizes(args.sizes)
        if not set(names) <= set(MODELS):
            raise ValueError(f"--models must be among {MODELS}; got {names}")
        if args.variant not in nprnn.VARIANTS or args.variant == "batchnorm":
            # batchnorm trains with mutable statistics: another step than the others'
            raise ValueError(f"--variant must be one of {nprnn.VARIANTS} but batchnorm")
    except ValueError as e:
        raise SystemExit(f"flax_layers.py: error: {e}") from None
    tuned = nprnn.tune_host_allocator()
    env = {**harness.environment(), "tune_allocator": tuned}  # (after the allocator settings)
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    results = []
    for size in sizes:
        hidden, inputs, batch, steps = size
        keys = jax.random.split(jax.random.key(0), 3)
        data = {
            "xs": jax.random.normal(keys[0], (steps, batch, inputs)),
            "targets": jax.random.randint(keys[1], (steps, batch), 0, args.vocab),
            "key": keys[2],
        }
        calls = {name: build(name, size, data, args) for name in names}
        times, _ = harness.time_round_robin(calls, args.repeats, args.warmup, untimed_before=1)
        base = harness.quartiles_ms(times[CORE])[0] if CORE in times else None
        print(
            f"\n(H, D, B, T) = {size}, variant {args.variant}, optimizer {args.optimizer}, "
            f"median of {args.repeats}; load average now {os.getloadavg()[0]:.2f}\n"
        )
        header = ["model", "train ms (IQR)", f"/ {CORE}"]
        print(harness.markdown_row(header) + "\n" + harness.markdown_rule(len(header)))
        for name, ts in times.items():
            median, q25, q75 = harness.quartiles_ms(ts)
            ratio = f"{median / base:.3f}" if base else "-"
            print(harness.markdown_row([name, harness.format_ms(median, q25, q75), ratio]))
            results.append(
                {
                    "size": list(size),
                    "model": name,
                    "median_ms": median,
                    "q25_ms": q25,
                    "q75_ms": q75,
                    "ratio_to_core": median / base if base else None,
                }
            )
    env["loadavg_end"] = os.getloadavg()
    if args.json_out:
        harness.write_json(args.json_out, {"env": env, "flags": vars(args), "results": results})
        print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
