"""Evaluates trained runs and makes the paper's tables and figures.

One run (newest checkpoint; writes RUN/eval_<split>_<protocol>.json for char LMs, RUN/eval_<split>
.json otherwise; prints sampled text, or writes DRAW sample PNGs into RUN):

    python eval.py --workdir=runs/ptb_np [--split=valid|test] [--protocol=windows|stream] \
        [--max_batches=N]

Tables 1-3 (Markdown, the paper's numbers beside ours; uses stored eval files, else evaluates):

    python eval.py --table=1 --runs=runs/ptb_lstm,runs/ptb_np [--out=table1.md]
    python eval.py --table=3 --runs_glob='runs/draw_*'

Figures 2 and 3 (learning curves from metrics.jsonl) and Figure 1 (gradient flow at init):

    python eval.py --figure=2 --runs=runs/ptb_lstm,runs/ptb_np --out=runs/figure2.png
    python eval.py --figure=1 [--out_dir=runs/figure1] [--grid=12]

The width series (Table 1's rows at several H; at each H the best learning rate given):

    python eval.py --figure=width --runs_glob='results/lr_sweep*/*/*/seed*' --no_eval \
        --out=results/width.png
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys

from absl import app, flags

from nprnn import evaluation, gradient_flow, paper, plots, reports, runs
from nprnn.data import DataError
from nprnn.host import tune_host_allocator

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run to evaluate.")
_TUNE_ALLOCATOR = flags.DEFINE_bool(
    "tune_allocator", True, "Keep freed host memory for reuse (see nprnn.tune_host_allocator)."
)
_SPLIT = flags.DEFINE_enum("split", "valid", ["valid", "test"], "Split to evaluate.")
_PROTOCOL = flags.DEFINE_enum(
    "protocol",
    "windows",
    ["windows", "stream"],
    "Char LMs: 'windows' (length-T windows from a fresh state, Table 1) or 'stream' (the whole "
    "split with carried state, Table 2).",
)
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "At most this many batches (0: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the samples.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 16, "DRAW: images to sample.")
_TABLE = flags.DEFINE_enum(
    "table",
    None,
    ["1", "2", "3", "lr"],
    "Assemble the paper's Table 1, 2 or 3; 'lr': the learning-rate sweep of Table 1's rows, "
    "then Table 1 at each row's best rate.",
)
_FIGURE = flags.DEFINE_enum(
    "figure",
    None,
    ["1", "2", "3", "width"],
    "Make the paper's Figure 1, 2 or 3; 'width': validation bpc against H of Table 1's runs "
    "(also prints the width table).",
)
_RUNS = flags.DEFINE_string("runs", None, "Comma-separated run directories (tables, figures).")
_RUNS_GLOB = flags.DEFINE_string("runs_glob", None, "Glob of run directories (tables, figures).")
_NO_EVAL = flags.DEFINE_bool(
    "no_eval", False, "Tables: use stored numbers only, never evaluate a checkpoint."
)
_STEP_TIMES = flags.DEFINE_string(
    "step_times",
    None,
    "Table 1: JSON of benchmarks/step_time.py --json_out; s/epoch from those quiet timings "
    "instead of the rates the runs logged.",
)
_OUT = flags.DEFINE_string(
    "out",
    None,
    "Figures 2/3 and width: the PNG (default runs/figure<N>.png, runs/figure_width.png); tables: "
    "a Markdown file.",
)
_OUT_DIR = flags.DEFINE_string("out_dir", "runs/figure1", "Figure 1: output directory.")
_GRID = flags.DEFINE_integer("grid", 12, "Figure 1: points per gamma axis (log-spaced).")
_GAMMA_RANGE = flags.DEFINE_list("gamma_range", ["0.05", "4"], "Figure 1: gamma axis limits.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 128, "Figure 1: H of the simulated cell.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Figure 1: simulated sequences.")
_STEPS = flags.DEFINE_integer("steps", 100, "Figure 1: T of the gradient-growth measurement.")
_COMPENSATION = flags.DEFINE_enum(
    "compensation",
    "paper",
    ["paper", "released"],
    "Figure 1: the normprop form, eq. 15 ('paper') or the authors' released code ('released').",
)
_INPUT_STD = flags.DEFINE_float(
    "input_std", 1.0, "Figure 1: std of the input components (1: the paper's assumption)."
)


def _runs() -> list:
    return runs.resolve_runs(_RUNS.value, _RUNS_GLOB.value)


def _evaluate_one() -> str:
    # A train.replicas="processes" run is a directory of seed runs: each is evaluated.
    records = [
        evaluation.evaluate_run(
            workdir,
            _SPLIT.value,
            _PROTOCOL.value,
            _MAX_BATCHES.value or None,
            seed=_SEED.value,
            num_samples=_NUM_SAMPLES.value,
        )
        for workdir in runs.replica_runs(_WORKDIR.value) or [_WORKDIR.value]
    ]
    return "\n".join(evaluation.format_record(record) for record in records)


def _table() -> str:
    assemble = (
        reports.learning_rate_sweep
        if _TABLE.value == "lr"
        else functools.partial(reports.assemble_table, int(_TABLE.value))
    )
    text = assemble(
        _runs(),
        evaluate=not _NO_EVAL.value,
        max_batches=_MAX_BATCHES.value or None,
        step_times=json.loads(pathlib.Path(_STEP_TIMES.value).read_text())
        if _STEP_TIMES.value
        else None,
    )
    if _OUT.value:
        pathlib.Path(_OUT.value).write_text(text)
        text += f"\nwrote {_OUT.value}"
    return text


def _figure1() -> str:
    low, high = (float(v) for v in _GAMMA_RANGE.value)
    config = gradient_flow.FlowConfig(
        hidden_size=_HIDDEN.value,
        batch_size=_BATCH.value,
        steps=_STEPS.value,
        input_std=_INPUT_STD.value,
        compensation=_COMPENSATION.value,
        seed=_SEED.value,
    )
    return reports.figure1_report(
        config, num=_GRID.value, low=low, high=high, out_dir=_OUT_DIR.value
    )


def _learning_curves() -> str:
    figure = int(_FIGURE.value)
    metric, title = paper.FIGURE_CURVES[figure]
    out = _OUT.value or f"runs/figure{figure}.png"
    return f"wrote {plots.plot_learning_curves(_runs(), out, metric=metric, title=title)}"


def _width() -> str:
    series = reports.width_series(
        _runs(), evaluate=not _NO_EVAL.value, max_batches=_MAX_BATCHES.value or None
    )
    out = _OUT.value or "runs/figure_width.png"
    return reports.width_table(series) + f"\nwrote {plots.plot_width(series, out)}"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    modes = [m for m in (_WORKDIR.value, _TABLE.value, _FIGURE.value) if m]
    if len(modes) != 1:
        raise app.UsageError("give exactly one of --workdir, --table, --figure")
    if _TUNE_ALLOCATOR.value:  # before the first JAX computation
        tune_host_allocator()
    if _WORKDIR.value:
        mode = _evaluate_one
    elif _TABLE.value:
        mode = _table
    else:
        mode = {"1": _figure1, "width": _width}.get(_FIGURE.value, _learning_curves)
    try:
        print(mode())
    except (FileNotFoundError, ValueError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
