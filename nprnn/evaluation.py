"""Evaluation of trained runs, the paper's tables, and learning curves (``eval.py`` calls these).

Three jobs:

* :func:`evaluate_run`: load the newest checkpoint of a run (:func:`nprnn.training.load_run`),
  evaluate one split with one protocol, write ``RUN/<eval file>`` (:func:`eval_filename`), and
  for a qualitative look sample text (char LMs) or draw images (DRAW, PNGs in the run).
* :func:`table_rows` and :func:`format_table`: the runs laid out as the paper's Table 1
  (validation bpc on length-100 windows, s/epoch, time relative to the baseline), Table 2 (test
  bpc on the full test sequence) or Table 3 (DRAW test bound, nats), the paper's published
  numbers beside ours, every row labelled with the config actually used.
* :func:`plot_learning_curves`: Figures 2 and 3, training (dashed) and validation (solid)
  curves against updates, from ``metrics.jsonl``.

The evaluation files, one per (split, protocol)::

    {"task", "variant", "split", "protocol", "step", "max_batches", "hidden_size",
     "metrics": {"loss", "bpc" | "nats" | "accuracy", ...}, "sample": text (char LMs),
     "images": [png paths] (DRAW)}

Tables read them when they exist and are not older than the run's newest checkpoint, and
evaluate (and write them) otherwise.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop
  track: Table 1, Table 2, Table 3, Figure 2, Figure 3.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import json
import math
import os
import pathlib
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "Row",
    "eval_filename",
    "evaluate_run",
    "read_config",
    "read_metrics",
    "resolve_runs",
    "median_s_per_epoch",
    "config_label",
    "table_rows",
    "format_table",
    "assemble_table",
    "plot_learning_curves",
    "save_draw_images",
]

CHAR_TASKS = ("ptb_char", "text8")
PROTOCOLS = ("windows", "stream")

# ----------------------------------------------------------------------------------------------
# The paper's published numbers (Laurent, Ballas, Vincent, "Recurrent Normalization Propagation",
# ICLR 2017 workshop track), as restated in /work/shared/PAPER.md. Hard-coded: they are the
# values printed in the paper, not something this code measured.

#: Table 1: char-level PTB, validation bpc on length-100 sequences, seconds per training epoch on
#: the authors' GPU, and time relative to the baseline. ``variant -> (row, bpc, s/epoch, ratio)``.
PAPER_TABLE1 = {
    "lstm": ("Baseline", 1.455, 386.0, 1.00),
    "weightnorm": ("Weight Norm", 1.438, 402.0, 1.04),
    "batchnorm": ("Batch Norm", 1.433, 545.0, 1.41),
    "layernorm": ("Layer Norm", 1.439, 530.0, 1.37),
    "normprop": ("Norm Prop", 1.422, 413.0, 1.07),
}

#: Table 2: regularized char-level PTB, test bpc on the full test sequence. Rows in the paper's
#: order as ``(row, bpc, our closest variant or None)``; only "Norm Prop LSTM" is the paper's own
#: model, the others are numbers the paper quotes from other work.
PAPER_TABLE2 = (
    ("Recurrent Dropout LSTM", 1.301, "lstm"),
    ("Zoneout LSTM", 1.27, None),
    ("Layer Norm LSTM", 1.267, "layernorm"),
    ("HyperLSTM", 1.265, None),
    ("Layer Norm HyperLSTM", 1.250, None),
    ("Norm Prop LSTM", 1.262, "normprop"),
)

#: Table 3: DRAW on binarized MNIST, test variational bound in nats after 200 epochs.
#: ``variant -> (row, nats)``; Gregor et al. (2015) report 80.97 for DRAW with attention.
PAPER_TABLE3 = {
    "lstm": ("Baseline", 84.30),
    "layernorm": ("Layer Norm", 82.09),
    "weightnorm": ("Weight Norm", 81.98),
    "normprop": ("Norm Prop", 81.17),
}
GREGOR_DRAW_NATS = 80.97

#: Row names for variants without a paper row.
VARIANT_NAMES = {
    "lstm": "Baseline",
    "weightnorm": "Weight Norm",
    "batchnorm": "Batch Norm",
    "layernorm": "Layer Norm",
    "normprop": "Norm Prop",
}

#: The paper's setting for each table: config fields that, when different, make a result a
#: different (usually smaller) setting. Gammas are per variant (section 5).
PAPER_SETTINGS = {
    1: {"task": CHAR_TASKS[:1], "hidden_size": 1000, "seq_len": 100},
    2: {"task": CHAR_TASKS[:1], "hidden_size": 1000, "seq_len": 100},
    3: {"task": ("draw",), "hidden_size": 256, "glimpses": 64, "latent_size": 100},
}
PAPER_GAMMAS = {
    1: {"normprop": (2.0, 2.0, 1.0), "layernorm": (1.0, 1.0, 1.0), "batchnorm": (0.1, 0.1, 0.1)},
    3: {"normprop": (0.5, 0.5, 0.5), "weightnorm": (0.5, 0.5, None)},
}
PAPER_GAMMAS[2] = PAPER_GAMMAS[1]
#: Table 2's regularization (section 5.1): dropout 0.1 on inputs, outputs and the cell candidate,
#: batch data normalization of the inputs.
TABLE2_REGULARIZATION = {
    "input_dropout": 0.1,
    "output_dropout": 0.1,
    "recurrent_dropout": 0.1,
    "input_norm": True,
}
# What each table reads: (split, protocol, metric).
TABLE_EVAL = {
    1: ("valid", "windows", "bpc"),
    2: ("test", "stream", "bpc"),
    3: ("test", None, "nats"),
}


# ----------------------------------------------------------------------------------------------
# Runs on disk.


def eval_filename(task: str, split: str, protocol: str | None = "windows") -> str:
    """Name of the evaluation file of a run.

    ``eval_<split>_<protocol>.json`` for the char LMs (the protocol matters there:
    ``windows`` = independent length-T windows, Table 1; ``stream`` = the full sequence, Table 2),
    ``eval_<split>.json`` for DRAW and sequential MNIST, which have one protocol only.
    """
    if task in CHAR_TASKS:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        return f"eval_{split}_{protocol}.json"
    return f"eval_{split}.json"


def read_config(workdir: str | os.PathLike) -> dict:
    """``RUN/config.json`` as a nested dict.

    Raises:
      FileNotFoundError: if the run has no config.json.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a training run directory?")
    return json.loads(path.read_text())


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The records of ``RUN/metrics.jsonl`` (empty if absent); unreadable lines are skipped."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run
    return records


def resolve_runs(runs: str | Sequence[str] | None = None, runs_glob: str | None = None) -> list:
    """Run directories from a comma-separated list and/or a glob (runs without config.json from
    the glob are skipped; listed runs must exist).

    Raises:
      FileNotFoundError: a listed run has no config.json, or nothing was given or matched.
    """
    out: list[pathlib.Path] = []
    if isinstance(runs, str):
        runs = [r for r in runs.split(",") if r.strip()]
    for run in runs or ():
        path = pathlib.Path(run.strip())
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path / 'config.json'} not found: not a training run")
        out.append(path)
    if runs_glob:
        for match in sorted(globlib.glob(runs_glob)):
            path = pathlib.Path(match)
            if (path / "config.json").exists() and path not in out:
                out.append(path)
    if not out:
        raise FileNotFoundError(f"no run directories in runs={runs!r} runs_glob={runs_glob!r}")
    return out


def latest_checkpoint_step(workdir: str | os.PathLike) -> int | None:
    """The largest step among ``RUN/checkpoints/<step>`` directories, without loading any."""
    ckpt = pathlib.Path(workdir) / "checkpoints"
    if not ckpt.is_dir():
        return None
    steps = [int(p.name) for p in ckpt.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(steps) if steps else None


def median_s_per_epoch(records: Iterable[dict]) -> float | None:
    """Median ``s_per_epoch`` of the training lines of metrics.jsonl (None if there are none).

    The median, so that the first line of a run (or of a resumed run), which includes the jit
    compilation, does not count.
    """
    values = [
        r["s_per_epoch"]
        for r in records
        if r.get("split") == "train" and isinstance(r.get("s_per_epoch"), int | float)
    ]
    return statistics.median(values) if values else None


def _steps_per_epoch(records: Iterable[dict]) -> float | None:
    for r in records:
        if r.get("split") == "train" and r.get("s_per_epoch") and r.get("steps_per_s"):
            return r["s_per_epoch"] * r["steps_per_s"]
    return None


# ----------------------------------------------------------------------------------------------
# Evaluating one run.


def save_draw_images(canvases, out_dir: str | os.PathLike, *, columns: int = 8) -> list:
    """PNGs of DRAW samples: a grid of the final images and the canvas over the glimpses.

    Args:
      canvases: [T, num, 784] canvas probabilities sigmoid(c_t) (``draw_sample``'s output).
      out_dir: directory for ``draw_samples.png`` and ``draw_glimpses.png``.
      columns: glimpses shown per sample in the second image (evenly spaced, the last included).

    Returns:
      The two paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvases = np.asarray(canvases, np.float32)
    steps, num, pixels = canvases.shape
    side = int(round(math.sqrt(pixels)))
    images = canvases.reshape(steps, num, side, side)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    ncol = int(math.ceil(math.sqrt(num)))
    nrow = int(math.ceil(num / ncol))
    grid = np.ones((nrow * (side + 2), ncol * (side + 2)), np.float32)
    for k in range(num):
        r0, c0 = (side + 2) * (k // ncol) + 1, (side + 2) * (k % ncol) + 1
        grid[r0 : r0 + side, c0 : c0 + side] = images[-1, k]
    fig, ax = plt.subplots(figsize=(ncol * 0.8 + 0.5, nrow * 0.8 + 0.5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"DRAW samples (after {steps} glimpses)", fontsize=9)
    samples_path = out_dir / "draw_samples.png"
    fig.savefig(samples_path, dpi=120, bbox_inches="tight")
    plt.close(fig)

    shown = min(num, 6)
    ts = np.unique(np.linspace(0, steps - 1, min(columns, steps)).round().astype(int))
    fig, axes = plt.subplots(
        shown, len(ts), figsize=(len(ts) * 0.9, shown * 0.9 + 0.4), squeeze=False
    )
    for i in range(shown):
        for j, t in enumerate(ts):
            ax = axes[i, j]
            ax.imshow(images[t, i], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t={t + 1}", fontsize=8)
    fig.suptitle("canvas sigmoid(c_t) over the glimpses", fontsize=9)
    glimpses_path = out_dir / "draw_glimpses.png"
    fig.savefig(glimpses_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [samples_path, glimpses_path]


def evaluate_run(
    workdir: str | os.PathLike,
    split: str = "valid",
    protocol: str = "windows",
    max_batches: int | None = None,
    *,
    samples: bool = True,
    seed: int = 0,
    num_samples: int = 16,
    write: bool = True,
) -> dict:
    """Evaluates the newest checkpoint of a run on one split and writes ``RUN/<eval file>``.

    Args:
      workdir: a training run's directory (``config.json``, ``checkpoints/``).
      split: ``"valid"`` or ``"test"``.
      protocol: char LMs only: ``"windows"`` (length-T windows from a fresh state, Table 1) or
        ``"stream"`` (the whole split as contiguous streams with carried state, Table 2). Ignored
        by the other tasks.
      max_batches: evaluate at most this many batches (None or 0: the whole split); the record
        says so, and tables label such a number.
      samples: also sample text (char LMs, into the record) or images (DRAW, PNGs in the run).
      seed: seed of the samples.
      num_samples: DRAW images to draw.
      write: write the record to ``RUN/<eval_filename(...)>``.

    Returns:
      The record (see the module docstring), with ``"path"`` the file written.

    Raises:
      FileNotFoundError: the run has no config or no readable checkpoint.
      ValueError: for an unknown split or protocol.
    """
    import jax

    from nprnn.training import load_run

    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    workdir = pathlib.Path(workdir)
    config, task, state, step = load_run(workdir)
    char = config.task in CHAR_TASKS
    if char and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    args = (state["params"], state["consts"], state["model_state"])
    metrics = task.evaluate(*args, split, max_batches=max_batches or None, protocol=protocol)
    record: dict[str, Any] = {
        "task": config.task,
        "variant": config.model.variant,
        "split": split,
        "protocol": protocol if char else None,
        "step": int(step),
        "max_batches": max_batches or None,
        "hidden_size": config.model.hidden_size,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    if samples and task.sample is not None:
        key = jax.random.key(seed)
        if char:
            record["sample"] = task.sample(*args, key)
        elif config.task == "draw":
            canvases = task.sample(*args, key, num=num_samples)
            record["images"] = [str(p) for p in save_draw_images(canvases, workdir)]
    if write:
        path = workdir / eval_filename(config.task, split, protocol)
        path.write_text(json.dumps(record, indent=2) + "\n")
        record["path"] = str(path)
    return record


def stored_or_evaluate(
    workdir: str | os.PathLike,
    split: str,
    protocol: str | None,
    *,
    evaluate: bool = True,
    max_batches: int | None = None,
) -> dict | None:
    """The stored evaluation record of a run, or a fresh one.

    A stored record is used when it exists and its step is not older than the newest checkpoint
    directory. Otherwise the run is evaluated (when ``evaluate`` and it has a checkpoint) and the
    record written. Returns None when there is nothing to use.
    """
    workdir = pathlib.Path(workdir)
    task = read_config(workdir)["task"]
    path = workdir / eval_filename(task, split, protocol or "windows")
    latest = latest_checkpoint_step(workdir)
    if path.exists():
        record = json.loads(path.read_text())
        if latest is None or record.get("step", -1) >= latest or not evaluate:
            return record
    if evaluate and latest is not None:
        return evaluate_run(
            workdir, split, protocol or "windows", max_batches, samples=False, write=True
        )
    return None


# ----------------------------------------------------------------------------------------------
# Tables.


@dataclasses.dataclass
class Row:
    """One line of a table: a paper row and (optionally) one of our runs.

    Attributes:
      model: the paper's row name (or the variant's name when the paper has no such row).
      variant: our variant, or None for a paper-only row.
      paper: the paper's number (bpc or nats), or None.
      ours: our number, or None.
      config: label of the config our number comes from ("" for a paper-only row).
      run: the run directory.
      paper_s_per_epoch, paper_ratio: Table 1's timing columns of the paper.
      s_per_epoch: our median seconds per epoch.
      ratio: ours relative to the baseline (lstm) run.
      note: where our number comes from when not a full evaluation file.
    """

    model: str
    variant: str | None = None
    paper: float | None = None
    ours: float | None = None
    config: str = ""
    run: str = ""
    paper_s_per_epoch: float | None = None
    paper_ratio: float | None = None
    s_per_epoch: float | None = None
    ratio: float | None = None
    note: str = ""


def _fmt_int(value: float) -> str:
    return f"{int(value):,}"


def config_label(config: dict, table: int, *, step: int | None = None, records=()) -> str:
    """A short description of the config a run used, for a table row.

    Always the hidden size, the updates trained and the batch size; "small config (paper: H=...)"
    when ``config.model.hidden_size`` differs from the paper's; and every other departure from
    the paper's setting of ``table`` (DRAW sizes, gammas, variance constants, Table 2's
    regularization, the window length).

    Args:
      config: the run's config.json as a dict.
      table: 1, 2 or 3.
      step: the updates behind the number (the evaluated checkpoint); else the last logged step.
      records: the run's metrics.jsonl records (for the epoch count and the fallback step).
    """
    model, data = config.get("model", {}), config.get("data", {})
    setting = PAPER_SETTINGS[table]
    hidden = model.get("hidden_size")
    if step is None:
        steps = [r.get("step", 0) for r in records]
        step = max(steps) if steps else None
    parts = [f"H={hidden}"]
    if step is not None:
        text = f"{_fmt_int(step)} updates"
        per_epoch = _steps_per_epoch(records)
        if per_epoch:
            text += f" ({step / per_epoch:.2g} epochs)"
        parts.append(text)
    if data.get("batch_size"):
        parts.append(f"batch {data['batch_size']}")
    if hidden != setting["hidden_size"]:
        parts.append(f"small config (paper: H={setting['hidden_size']})")
    if table in (1, 2) and data.get("seq_len") != setting["seq_len"]:
        parts.append(f"length-{data.get('seq_len')} windows (paper: 100)")
    if table == 3:
        for name, short in (("glimpses", "T"), ("latent_size", "z")):
            if model.get(name) != setting[name]:
                parts.append(f"{short}={model.get(name)} (paper: {setting[name]})")
    variant = model.get("variant")
    paper_gammas = PAPER_GAMMAS[table].get(variant)
    gammas = tuple(model.get(k) for k in ("gamma_x", "gamma_h", "gamma_c"))
    if paper_gammas and any(
        g is not None and p is not None and not math.isclose(g, p)
        for g, p in zip(gammas, paper_gammas, strict=True)
    ):
        shown = tuple(p if g is None else g for g, p in zip(gammas, paper_gammas, strict=True))
        parts.append("gammas (" + ", ".join(f"{g:g}" for g in shown if g is not None) + ")")
    if variant == "normprop" and model.get("variance_method", "analytic") != "analytic":
        parts.append(f"{model['variance_method']} variance constants")
    if table == 2:
        missing = [k for k, v in TABLE2_REGULARIZATION.items() if model.get(k) != v]
        if missing:
            parts.append("not Table 2's regularization: " + ", ".join(missing))
    return ", ".join(parts)


def _check_task(config: dict, table: int, run) -> None:
    tasks = PAPER_SETTINGS[table]["task"]
    if config.get("task") not in tasks:
        raise ValueError(
            f"run {run} is task {config.get('task')!r}; Table {table} needs task {tasks[0]!r}"
        )


def table_rows(
    table: int,
    runs: Sequence[str | os.PathLike],
    *,
    evaluate: bool = True,
    max_batches: int | None = None,
) -> list[Row]:
    """The rows of Table ``table`` for ``runs``: the paper's rows, each with our matching runs.

    Every run becomes one row under the paper's row of its variant (several runs of a variant
    give several rows, in the order given); paper rows without a run keep an empty "ours"; runs
    of a variant the paper's table lacks get a row with an empty "paper". Our number comes from
    the run's evaluation file (:func:`stored_or_evaluate`: evaluated when missing or stale), or,
    as a last resort for Table 1, from the last validation line of metrics.jsonl (noted).

    Args:
      table: 1, 2 or 3.
      runs: run directories.
      evaluate: evaluate runs whose evaluation file is missing or stale.
      max_batches: for such evaluations, at most this many batches.

    Returns:
      The rows, in the paper's order.

    Raises:
      ValueError: an unknown table, or a run of another task.
    """
    if table not in TABLE_EVAL:
        raise ValueError(f"table must be 1, 2 or 3, got {table!r}")
    split, protocol, metric = TABLE_EVAL[table]
    ours: dict[str, list[Row]] = {}
    for run in runs:
        config = read_config(run)
        _check_task(config, table, run)
        records = read_metrics(run)
        variant = config["model"]["variant"]
        record = stored_or_evaluate(
            run, split, protocol, evaluate=evaluate, max_batches=max_batches
        )
        value, note, step = None, "", None
        if record is not None:
            value = record["metrics"].get(metric)
            step = record.get("step")
            if record.get("max_batches"):
                note = f"{split} on the first {record['max_batches']} batches"
        else:
            stored = eval_filename(config["task"], split, protocol or "windows")
            valid = [r for r in records if r.get("split") == "valid" and metric in r]
            if table == 1 and valid:
                value, step = valid[-1][metric], valid[-1]["step"]
                note = f"no {stored}: training-time validation (config.train.eval_batches)"
            else:
                why = "no checkpoint to evaluate" if evaluate else "--no_eval"
                note = f"no {stored} ({why})"
        ours.setdefault(variant, []).append(
            Row(
                model="",
                variant=variant,
                ours=value,
                config=f"`{pathlib.Path(run).name}`: "
                + config_label(config, table, step=step, records=records),
                run=str(run),
                s_per_epoch=median_s_per_epoch(records) if table == 1 else None,
                note=note,
            )
        )
    if table == 1:
        base = ours.get("lstm", [])
        base_time = base[0].s_per_epoch if base else None
        for rows in ours.values():
            for row in rows:
                if base_time and row.s_per_epoch:
                    row.ratio = row.s_per_epoch / base_time

    if table == 1:
        paper = [(name, bpc, v, s, r) for v, (name, bpc, s, r) in PAPER_TABLE1.items()]
    elif table == 2:
        paper = [(name, bpc, v, None, None) for name, bpc, v in PAPER_TABLE2]
    else:
        paper = [(name, nats, v, None, None) for v, (name, nats) in PAPER_TABLE3.items()]
        paper.append(
            ("DRAW with attention (Gregor et al. 2015)", GREGOR_DRAW_NATS, None, None, None)
        )
    out: list[Row] = []
    placed = set()
    for name, value, variant, s, r in paper:
        matched = ours.get(variant, []) if variant else []
        placed.add(variant)
        if not matched:
            out.append(Row(model=name, paper=value, paper_s_per_epoch=s, paper_ratio=r))
        for k, row in enumerate(matched):
            row.model = name
            if k == 0:
                row.paper, row.paper_s_per_epoch, row.paper_ratio = value, s, r
            out.append(row)
    for variant, rows in ours.items():
        if variant not in placed:
            for row in rows:
                row.model = VARIANT_NAMES.get(variant, variant)
                out.append(row)
    return out


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def format_table(table: int, rows: Sequence[Row]) -> str:
    """Markdown for :func:`table_rows`' rows, with the paper's and our columns side by side."""
    if table == 1:
        head = (
            "| Model | Our config | Valid bpc (paper) | Valid bpc (ours) | s/epoch (paper) "
            "| s/epoch (ours) | Time / baseline (paper) | Time / baseline (ours) |"
        )
        lines = [head, "|" + "---|" * 8]
        for r in rows:
            lines.append(
                f"| {r.model} | {r.config or '—'} | {_num(r.paper)} | {_num(r.ours)} "
                f"| {_num(r.paper_s_per_epoch, 0)} | {_num(r.s_per_epoch, 1)} "
                f"| {_num(r.paper_ratio, 2)} | {_num(r.ratio, 2)} |"
            )
    else:
        unit = "Test bpc" if table == 2 else "Test nats"
        lines = [f"| Model | Our config | {unit} (paper) | {unit} (ours) |", "|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r.model} | {r.config or '—'} | {_num(r.paper, 3 if table == 2 else 2)} "
                f"| {_num(r.ours, 3 if table == 2 else 2)} |"
            )
    notes = [f"- {r.model} ({r.run}): {r.note}" for r in rows if r.note]
    caption = {
        1: (
            "Table 1 (char-level PTB): bits per character on the validation split in length-100 "
            "windows, each from a fresh state; seconds per training epoch and time relative to "
            "the baseline (the lstm run). Paper: Laurent et al. (2017), Table 1, one layer of "
            "1000 units, timed on the authors' GPU; ours: median `s_per_epoch` of the training "
            "lines of metrics.jsonl on the machine that trained each run (timings from different "
            "machines are not comparable)."
        ),
        2: (
            "Table 2 (regularized char-level PTB): bits per character on the whole test "
            "sequence (stream protocol, state carried). Paper: Laurent et al. (2017), Table 2; "
            "only Norm Prop LSTM is the paper's own model, the other rows are results it quotes "
            "from other work, and our runs beside them are the closest variant of ours, not "
            "those models."
        ),
        3: (
            "Table 3 (DRAW, binarized MNIST): test variational bound in nats (1-sample "
            "estimate). Paper: Laurent et al. (2017), Table 3, 256 units, 64 glimpses, latent "
            "100, 200 epochs; Gregor et al. (2015) for DRAW with attention."
        ),
    }[table]
    text = caption + "\n\n" + "\n".join(lines) + "\n"
    if table == 1 and not any(r.variant == "lstm" and r.ours is not None for r in rows):
        notes.append("- no lstm run given: our time / baseline column is empty")
    if notes:
        text += "\nNotes:\n" + "\n".join(notes) + "\n"
    return text


def assemble_table(
    table: int,
    runs: Sequence[str | os.PathLike],
    *,
    evaluate: bool = True,
    max_batches: int | None = None,
) -> str:
    """:func:`table_rows` then :func:`format_table`."""
    return format_table(table, table_rows(table, runs, evaluate=evaluate, max_batches=max_batches))


# ----------------------------------------------------------------------------------------------
# Learning curves.


def plot_learning_curves(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    metric: str | None = None,
    title: str | None = None,
) -> pathlib.Path:
    """Figures 2 and 3: training (dashed) and validation (solid) curves against updates.

    One colour per variant (the same colour for a variant in every figure); a second run of a
    variant gets a colour of its own and its run name in the label.

    Args:
      runs: run directories (with metrics.jsonl and config.json).
      out: the PNG to write.
      metric: ``"bpc"`` or ``"nats"``; None: from the first run's task.
      title: figure title.

    Returns:
      The path written.

    Raises:
      ValueError: when no run has a curve of ``metric``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nprnn.initializers import VARIANTS

    palette = plt.get_cmap("tab10").colors
    colours = dict(zip(VARIANTS, palette, strict=False))
    extra = iter(palette[len(VARIANTS) :] * 4)  # further runs of a variant: colours 6-10
    seen: set[str] = set()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    drawn = 0
    variants = [read_config(run)["model"]["variant"] for run in runs]
    for run in runs:
        config = read_config(run)
        if metric is None:
            metric = "bpc" if config.get("task") in CHAR_TASKS else "nats"
        records = read_metrics(run)
        variant = config["model"]["variant"]
        name = f"{VARIANT_NAMES.get(variant, variant)} (H={config['model']['hidden_size']})"
        if variants.count(variant) > 1:
            name += f" [{pathlib.Path(run).name}]"
        colour = next(extra) if variant in seen else colours.get(variant, "k")
        seen.add(variant)
        for split, style in (("train", "--"), ("valid", "-")):
            points = sorted(
                (r["step"], r[metric]) for r in records if r.get("split") == split and metric in r
            )
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(
                xs,
                ys,
                style,
                color=colour,
                alpha=0.6 if split == "train" else 1.0,
                marker="o" if split == "valid" and len(xs) < 30 else None,
                markersize=3,
                label=f"{name} {split}",
            )
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no run has a '{metric}' curve in its metrics.jsonl")
    ax.set_xlabel("updates")
    ax.set_ylabel({"bpc": "bits per character", "nats": "nats per image"}.get(metric, metric))
    ax.set_title(title or "learning curves (training dashed, validation solid)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
