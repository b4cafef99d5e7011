r"""Steps per second of the training loop with its divergence check on the device, against the
same loop reading the loss back after every update; imports nprnn.training and harness.

The loop of ``nprnn.training`` keeps "has an update been NaN or Inf" on the device and reads it
at log, evaluation and checkpoint steps only. Before issue 21 it read the loss back to the host
after every update: a synchronization per step, so the next update could not be dispatched
before the last one had finished. This script runs ``training.train_and_evaluate`` on
``configs/ptb_char_study.py`` (the study's size: H = 128, batch 32, windows of 100; normprop
with the critical gamma_h) for ``--steps`` updates in two modes, alternating, ``--rounds``
times:

* ``device``: the loop as it is;
* ``per_step_read``: the same loop, whose jitted step is wrapped to read the loss back with
  ``float`` after every call, as the old loop did.

The rate is the loop's own ``steps_per_s`` (metrics.jsonl, evaluation time excluded) over the
log intervals after the first (which holds the compilation). Reported: the median rate of each
mode over all its intervals, and their ratio.

Usage:
  .venv/bin/python benchmarks/host_sync.py --data_dir=../shared/data --steps=600 --rounds=3
"""

from __future__ import annotations

import json
import pathlib
import runpy
import statistics
import sys
import tempfile
from unittest import mock

import jax
import numpy as np

# benchmarks/ is sys.path[0] when this file runs as a script, so harness imports as top-level.
import harness

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # configs/ imports configs.ptb_char

import nprnn  # noqa: E402
from nprnn import training  # noqa: E402

MODES = ("device", "per_step_read")


class _ReadEveryStep:
    """Stands in for the ``jax`` module inside ``nprnn.training``: ``jit`` of the loop's step
    (``step_and_watch``) gives a function that reads the loss back after every call; every other
    name is jax's own. ``calls`` counts the reads, so that the mode is known to have run."""

    def __init__(self):
        self.calls = 0

    def __getattr__(self, name):
        return getattr(jax, name)

    def jit(self, fn, **kwargs):
        jitted = jax.jit(fn, **kwargs)
        if getattr(fn, "__name__", "") != "step_and_watch":
            return jitted

        def step(*args):
            state, health, out = jitted(*args)
            float(np.asarray(out["loss"]).reshape(-1)[0])  # the old loop's per-step check
            self.calls += 1
            return state, health, out

        return step


def config_for(args):
    config = runpy.run_path(str(REPO / "configs" / "ptb_char_study.py"))["get_config"]()
    config.model.variant = "normprop"
    config.model.gamma_init = "critical"
    config.data.dir = args.data_dir
    config.train.num_steps = args.steps
    config.train.log_every = args.log_every
    config.train.eval_every = args.steps  # one evaluation, at the end (not in the rate)
    config.train.eval_batches = 1
    config.train.checkpoint_every = args.steps
    return config


def run_once(args, mode: str) -> list[float]:
    """The ``steps_per_s`` of every log interval after the first."""
    with tempfile.TemporaryDirectory() as workdir:
        if mode == "device":
            training.train_and_evaluate(config_for(args), workdir)
        else:
            proxy = _ReadEveryStep()
            with mock.patch.object(training, "jax", proxy):
                training.train_and_evaluate(config_for(args), workdir)
            assert proxy.calls == args.steps, (proxy.calls, args.steps)
        rows = [json.loads(line) for line in pathlib.Path(workdir, "metrics.jsonl").open()]
    rates = [r["steps_per_s"] for r in rows if r["split"] == "train"]
    return rates[1:]


def main(argv=None) -> None:
    parser = harness.flag_parser(__doc__)
    parser.add_argument("--data_dir", default="../shared/data", help="holds ptb/")
    parser.add_argument("--steps", type=int, default=600, help="updates per run")
    parser.add_argument("--log_every", type=int, default=100, help="updates per measured interval")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode, alternating")
    harness.add_output_flags(parser)
    args = parser.parse_args(argv)
    if args.steps < 2 * args.log_every:
        parser.error("--steps must hold at least two log intervals")
    nprnn.tune_host_allocator()  # as train.py does
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for k in range(args.rounds):
        for mode in MODES:
            got = run_once(args, mode)
            rates[mode] += got
            print(f"round {k + 1} {mode}: {', '.join(f'{r:.2f}' for r in got)} steps/s", flush=True)
    medians = {mode: statistics.median(r) for mode, r in rates.items()}
    print(harness.markdown_row(["mode", "steps/s (median)", "intervals", "ratio to device"]))
    print(harness.markdown_rule(4))
    for mode in MODES:
        ratio = medians[mode] / medians["device"]
        cells = [mode, f"{medians[mode]:.2f}", str(len(rates[mode])), f"{ratio:.3f}"]
        print(harness.markdown_row(cells))
    print(harness.environment())
    if args.json_out:
        harness.write_json(args.json_out, {"rates": rates, "medians": medians, **vars(args)})


if __name__ == "__main__":
    main()
