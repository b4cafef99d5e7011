"""Tables 1-3, the width series and the Figure 1 summary; imports paper, runs, evaluation,
gradient_flow, plots and configs.

The text that ``eval.py --table``, ``--figure=width`` and ``--figure=1`` print (the imports are the
``nprnn`` modules of those names):

* :func:`table_rows` and :func:`format_table` (:func:`assemble_table` does both): the runs laid
  out as the paper's Table 1 (validation bpc on length-100 windows, s/epoch, time relative to
  the baseline), Table 2 (test bpc on the full test sequence) or Table 3 (DRAW test bound,
  nats), the paper's published numbers (:mod:`nprnn.paper`) beside ours, every row labelled
  with the config actually used (:func:`config_label`). Our numbers come from the runs'
  evaluation files when they exist and are not older than the run's newest checkpoint, and
  from a fresh evaluation (written to the run) otherwise
  (:func:`nprnn.evaluation.stored_or_evaluate`).
* :func:`width_series` and :func:`width_table`: Table 1's rows across widths H (at each width
  the best learning rate given), the time per update relative to lstm, and normprop's gaps to
  layer norm and batch norm with their standard errors (``eval.py --figure=width``, which also
  draws :func:`nprnn.plots.plot_width`).
* :func:`figure1_report`: runs the Figure 1 study (:mod:`nprnn.gradient_flow`), writes its
  heatmaps (:func:`nprnn.plots.plot_figure1`) and numbers, and returns a text summary.

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop
  track: Table 1, Table 2, Table 3, section 4 and Figure 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import statistics
import time
from collections.abc import Sequence

import numpy as np

from nprnn import configs
from nprnn import gradient_flow as gf
from nprnn.evaluation import stored_or_evaluate
from nprnn.paper import (
    FIGURE1_POINTS,
    GREGOR_DRAW_NATS,
    PAPER_GAMMAS,
    PAPER_SETTINGS,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE3,
    TABLE2_REGULARIZATION,
    TABLE_EVAL,
    VARIANT_NAMES,
)
from nprnn.plots import plot_figure1
from nprnn.runs import (
    config_key,
    eval_filename,
    median_s_per_epoch,
    read_config,
    read_metrics,
    steps_per_epoch,
)

__all__ = [
    "Row",
    "config_label",
    "table_rows",
    "format_table",
    "assemble_table",
    "WidthSeries",
    "width_series",
    "width_table",
    "learning_rate_sweep",
    "figure1_report",
]


# ----------------------------------------------------------------------------------------------
# Tables 1-3.


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
      ours_std: the sample standard deviation of our number over the runs of the row (seeds).
      n: how many runs (or replicas of a ``train.num_seeds`` run) the row's number is the mean of.
      name: the row's short name: its run directory's (or, for several runs, their parent's).
      runs, values, times, notes: per run of the row (the seeds), what the above summarize (the
        runs of a row share one note).
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
    ours_std: float | None = None
    n: int = 0
    name: str = ""
    runs: list[str] = dataclasses.field(default_factory=list)
    values: list[float | None] = dataclasses.field(default_factory=list)
    times: list[float | None] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def _fmt_int(value: float) -> str:
    return f"{int(value):,}"


def config_label(
    config: dict, table: int, *, step: int | None = None, records=(), learning_rate: bool = True
) -> str:
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
      learning_rate: name the learning rate where it is not the paper's (False: never, for the
        rows of a learning-rate sweep).
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
        per_epoch = steps_per_epoch(records)
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
    if variant == "normprop":  # which form produced the number, always said
        parts.append(f"{model.get('compensation', 'paper')} form")
    if variant == "normprop" and model.get("gamma_init") == "critical":
        parts.append("critical gamma_h")
    opt = config.get("opt", {})
    lr = opt.get("learning_rate")
    if learning_rate and lr is not None and not math.isclose(lr, setting["learning_rate"]):
        parts.append(f"lr {lr:g} (paper: {setting['learning_rate']:g})")
    if "decay" in opt:
        schedule = opt.get("schedule", "exponential").replace("_", "-")
        parts.append(f"{schedule} decay {opt['decay']:g} per {opt.get('decay_every', 'update')}")
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
    step_times: dict | None = None,
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
      step_times: Table 1: the JSON of ``benchmarks/step_time.py --json_out`` (timed in one
        quiet process); a row's s/epoch is then the median training step of its variant at its
        (H, B, T) times its updates per epoch, instead of the rate its run logged while training
        (which other jobs on the machine distort).

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
                batches = config.get("train", {}).get("eval_batches", 0)
                where = f"its first {batches} batches" if batches else "the whole split"
                note = f"no {stored}: the training-time validation on {where}"
            else:
                why = "no checkpoint to evaluate" if evaluate else "--no_eval"
                note = f"no {stored} ({why})"
        # Runs of one config whose numbers come from the same kind of evaluation are one row
        # (its seeds): the label says everything but the seed, the note where the number is from.
        label = config_label(config, table, step=step, records=records)
        seen = ours.setdefault(variant, [])
        same = [row for row in seen if row.config == label and row.notes[:1] == [note]]
        row = same[0] if same else Row(model="", variant=variant, config=label)
        if not same:
            seen.append(row)
        row.runs.append(str(run))
        row.values.extend(value if isinstance(value, list) else [value])  # a list: replicas
        if table == 1 and step_times is not None:
            row.times.append(_timed_s_per_epoch(step_times, config, records))
        else:
            row.times.append(median_s_per_epoch(records) if table == 1 else None)
        row.notes.append(note)
    for rows in ours.values():
        for row in rows:
            _summarize(row)
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


def _timed_s_per_epoch(step_times: dict, config: dict, records) -> float | None:
    """Seconds per epoch from step_time.py's median training step of the run's variant and
    (H, B, T) (its input size is not matched: the char LM's is V), or None if not timed."""
    model, data = config["model"], config["data"]
    per_epoch = steps_per_epoch(records)
    for r in step_times.get("results", []):
        hidden, _, batch, steps = r["size"]
        if (
            r["model"] == model["variant"]
            and r["mode"] == "train"
            and (hidden, batch, steps)
            == (model["hidden_size"], data["batch_size"], data["seq_len"])
            and per_epoch
        ):
            return r["median_ms"] / 1e3 * per_epoch if per_epoch else None
    return None


def _summarize(row: Row) -> None:
    """Fills a row's numbers from its runs: mean, sample std and n of the values that exist,
    median time per epoch, the runs named, the notes joined."""
    values = [v for v in row.values if v is not None]
    row.n = len(values)
    row.ours = statistics.fmean(values) if values else None
    row.ours_std = statistics.stdev(values) if len(values) > 1 else None
    times = [t for t in row.times if t is not None]
    row.s_per_epoch = statistics.median(times) if times else None
    names = [pathlib.Path(run).name for run in row.runs]
    parents = {_seed_parent(run) for run in row.runs}
    if len(names) == 1 and re.fullmatch(r"seed\d+", names[0]):
        name = _seed_parent(row.runs[0])  # a study's seed<k>: its row's directory names it
    elif len(names) == 1 or len(parents) > 1:
        name = names[0]
    else:
        name = parents.pop()
    seeds = f" ({len(names)} runs)" if len(names) > 1 else ""
    row.name = name
    row.config = f"`{name}`{seeds}: {row.config}"
    row.run = ", ".join(row.runs)
    row.note = row.notes[0]


def _seed_parent(run) -> str:
    """The name of the directory holding a seed run: its parent's, or ``row/lr<x>`` where the
    parent is a learning rate of a sweep (``results/lr_sweep/<row>/lr<x>/seed<k>``)."""
    parent = pathlib.Path(run).parent
    if re.fullmatch(r"lr[0-9.e+-]+", parent.name):
        return f"{parent.parent.name}/{parent.name}"
    return parent.name


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ours(row: Row, digits: int) -> str:
    """Our number: the value, or ``mean ± std (n=k)`` over several runs."""
    if row.n > 1:
        return f"{row.ours:.{digits}f} ± {row.ours_std:.{digits}f} (n={row.n})"
    return _num(row.ours, digits)


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
                f"| {r.model} | {r.config or '—'} | {_num(r.paper)} | {_ours(r, 3)} "
                f"| {_num(r.paper_s_per_epoch, 0)} | {_num(r.s_per_epoch, 1)} "
                f"| {_num(r.paper_ratio, 2)} | {_num(r.ratio, 2)} |"
            )
    else:
        unit = "Test bpc" if table == 2 else "Test nats"
        lines = [f"| Model | Our config | {unit} (paper) | {unit} (ours) |", "|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r.model} | {r.config or '—'} | {_num(r.paper, 3 if table == 2 else 2)} "
                f"| {_ours(r, 3 if table == 2 else 2)} |"
            )
    notes = [f"- {r.model} ({r.run}): {r.note}" for r in rows if r.note]
    caption = {
        1: (
            "Table 1 (char-level PTB): bits per character on the validation split in length-100 "
            "windows, each from a fresh state; seconds per training epoch and time relative to "
            "the baseline (the lstm run). Paper: Laurent et al. (2017), Table 1, one layer of "
            "1000 units, timed on the authors' GPU; ours: median `s_per_epoch` of the training "
            "lines of metrics.jsonl on the machine that trained each run, unless the last line "
            "below says they come from `benchmarks/step_time.py` (timings from different "
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
    ranked = ranking(rows)
    if ranked:
        text += (
            "\nOrder of our rows with two runs or more, best first: `<` where the gap exceeds two "
            "standard errors of the difference, `≈` where it does not (no ranking):\n\n"
            + ranked
            + "\n"
        )
        hidden = rankings_past_neighbours(rows)
        if hidden:
            text += (
                "\nPairs the order joins by `≈` alone whose own gap exceeds two standard errors: "
                + "; ".join(hidden)
                + ".\n"
            )
    if notes:
        text += "\nNotes:\n" + "\n".join(notes) + "\n"
    return text


def _difference_se(a: Row, b: Row) -> float:
    """The standard error of the difference of two rows' means, ``sqrt(s1^2 / n1 + s2^2 / n2)``
    (both with ``n >= 2``)."""
    return math.sqrt(a.ours_std**2 / a.n + b.ours_std**2 / b.n)


def _separated(lo: Row, hi: Row) -> bool:
    """Whether ``hi`` is above ``lo`` by more than two standard errors of the difference."""
    return hi.ours - lo.ours > 2 * _difference_se(lo, hi)


def _seeded(rows: Sequence[Row]) -> list[Row]:
    """Our rows with ``n >= 2``, from the lowest (best) number up."""
    return sorted((r for r in rows if r.n >= 2), key=lambda r: r.ours)


def _name(row: Row) -> str:
    return f"{row.model} [{row.name}]"


def ranking(rows: Sequence[Row]) -> str:
    """Our rows with ``n >= 2`` from the lowest (best) number up, each neighbour pair joined by
    ``<`` when the gap exceeds two standard errors of the difference (`_separated`) and by ``≈``
    otherwise; "" with fewer than two such rows.
    """
    seeded = _seeded(rows)
    if len(seeded) < 2:
        return ""
    text = _name(seeded[0])
    for lo, hi in zip(seeded, seeded[1:], strict=False):
        text += (" < " if _separated(lo, hi) else " ≈ ") + _name(hi)
    return text


def rankings_past_neighbours(rows: Sequence[Row]) -> list[str]:
    """The pairs of rows that `ranking`'s chain joins by ``≈`` links only but whose own gap
    exceeds two standard errors (a noisy row between two precise ones hides them), as
    ``"A < B"``, best first."""
    seeded = _seeded(rows)
    links = [_separated(lo, hi) for lo, hi in zip(seeded, seeded[1:], strict=False)]
    return [
        f"{_name(seeded[i])} < {_name(seeded[j])}"
        for i in range(len(seeded))
        for j in range(i + 2, len(seeded))
        if not any(links[i:j]) and _separated(seeded[i], seeded[j])
    ]


def assemble_table(
    table: int,
    runs: Sequence[str | os.PathLike],
    *,
    evaluate: bool = True,
    max_batches: int | None = None,
    step_times: dict | None = None,
) -> str:
    """:func:`table_rows` then :func:`format_table`."""
    rows = table_rows(
        table, runs, evaluate=evaluate, max_batches=max_batches, step_times=step_times
    )
    text = format_table(table, rows)
    if step_times is not None:
        env = step_times.get("env", {})
        text += (
            f"\nOur s/epoch: median training step of `benchmarks/step_time.py` "
            f"(optimizer: {step_times.get('flags', {}).get('optimizer', '?')}), timed in one "
            f"process on {env.get('date', '?')}, times the updates per epoch; the released "
            "normprop form runs normprop's program plus one multiply per step.\n"
        )
    return text


# ----------------------------------------------------------------------------------------------
# Learning rate per row (issue 19).


def _sweep_rows(runs, evaluate: bool, max_batches: int | None) -> dict:
    """``{row label without the rate: {learning rate: Row}}`` of Table 1's rows for ``runs``."""
    out: dict[str, dict[float, Row]] = {}
    for row in table_rows(1, runs, evaluate=evaluate, max_batches=max_batches):
        if not row.runs or row.ours is None:
            continue
        config, records = read_config(row.runs[0]), read_metrics(row.runs[0])
        family = f"{row.model}: " + config_label(config, 1, records=records, learning_rate=False)
        out.setdefault(family, {})[config["opt"]["learning_rate"]] = row
    return out


def learning_rate_sweep(
    runs: Sequence[str | os.PathLike],
    *,
    evaluate: bool = True,
    max_batches: int | None = None,
    step_times: dict | None = None,
) -> str:
    """The learning-rate sweep of Table 1's rows, then Table 1 at each row's best rate.

    Runs that differ in ``opt.learning_rate`` alone are one row of the sweep (a column per
    rate, the mean over seeds where a rate has several); the best rate is the lowest validation
    bpc, and a best rate at the edge of those tried is flagged (the next rate out should be
    tried). The tuned table is :func:`assemble_table` of the runs at each row's best rate.
    """
    families = _sweep_rows(runs, evaluate, max_batches)
    rates = sorted({lr for by_lr in families.values() for lr in by_lr})
    lines = [
        "| Row | " + " | ".join(f"lr {lr:g}" for lr in rates) + " | best |",
        "|---|" + "---|" * (len(rates) + 1),
    ]
    best_runs, edges = [], []
    for family, by_lr in families.items():
        best = min(by_lr, key=lambda lr: by_lr[lr].ours)
        best_runs += by_lr[best].runs
        cells = [_ours(by_lr[lr], 3) if lr in by_lr else "—" for lr in rates]
        cells = [f"**{c}**" if lr == best else c for lr, c in zip(rates, cells, strict=True)]
        lines.append(f"| {family} | " + " | ".join(cells) + f" | {best:g} |")
        tried = sorted(by_lr)
        if len(tried) > 1 and best in (tried[0], tried[-1]):
            edges.append(
                f"{family.split(':')[0]} (best {best:g}, tried {tried[0]:g}-{tried[-1]:g})"
            )
    text = (
        "Learning-rate sweep (Table 1's protocol: validation bpc on length-100 windows; the mean "
        "over seeds where a rate has several runs; best in bold):\n\n" + "\n".join(lines) + "\n"
    )
    if edges:
        text += "\nBest at an edge of the rates tried (try the next one out): " + "; ".join(edges)
        text += ".\n"
    tuned = assemble_table(
        1, best_runs, evaluate=evaluate, max_batches=max_batches, step_times=step_times
    )
    return text + "\nTable 1 at each row's best rate:\n\n" + tuned


# ----------------------------------------------------------------------------------------------
# The width series (issue 19).


@dataclasses.dataclass
class WidthSeries:
    """One row of the width series: a configuration of Table 1 at several widths.

    Attributes:
      name: the row's name (the paper's row; normprop's form and initialization).
      variant: the variant.
      rows: ``{H: Row}``, at each width the row (seeds) at its best learning rate.
      rates: ``{H: learning rate}`` of those rows.
    """

    name: str
    variant: str
    rows: dict[int, Row] = dataclasses.field(default_factory=dict)
    rates: dict[int, float] = dataclasses.field(default_factory=dict)


def _series_name(model: str, config: dict) -> str:
    name, parts = model, []
    m = config.get("model", {})
    if m.get("variant") == "normprop":
        parts.append(f"{m.get('compensation', 'paper')} form")
        if m.get("gamma_init") == "critical":
            parts.append("critical γh")
        if m.get("variance_method", "analytic") != "analytic":
            parts.append(f"{m['variance_method']} constants")
    return f"{name} ({', '.join(parts)})" if parts else name


def width_series(
    runs: Sequence[str | os.PathLike], *, evaluate: bool = True, max_batches: int | None = None
) -> list[WidthSeries]:
    """Table 1's runs grouped by configuration across ``model.hidden_size``.

    Runs whose configs differ only in the seed, the width and the learning rate are one series;
    at each width it takes the learning rate with the lowest mean validation bpc (the rates of a
    sweep may all be given).
    """
    found: dict[str, WidthSeries] = {}
    for row in table_rows(1, runs, evaluate=evaluate, max_batches=max_batches):
        if not row.runs or row.ours is None:
            continue
        config = read_config(row.runs[0])
        key = config_key(  # old runs' config.json lacks the fields added since
            configs.with_defaults(config).to_dict(),
            ignore=("model.hidden_size", "opt.learning_rate"),
        )
        series = found.setdefault(key, WidthSeries(_series_name(row.model, config), row.variant))
        hidden, lr = config["model"]["hidden_size"], config["opt"]["learning_rate"]
        if hidden not in series.rows or row.ours < series.rows[hidden].ours:
            series.rows[hidden], series.rates[hidden] = row, lr
    names = [s.name for s in found.values()]
    for series in found.values():
        if names.count(series.name) > 1:  # two configs with one name: say which runs
            series.name += f" [{next(iter(series.rows.values())).name}]"
    return list(found.values())


def _gap(a: Row, b: Row) -> str:
    """``a - b`` with the standard error of the difference, and whether it exceeds two."""
    if a.n < 2 or b.n < 2:
        return f"{a.ours - b.ours:+.3f} (n={a.n}, {b.n}: no standard error)"
    se = _difference_se(a, b)
    verdict = "beyond 2 SE" if abs(a.ours - b.ours) > 2 * se else "within 2 SE"
    return f"{a.ours - b.ours:+.3f} ± {se:.3f} ({verdict})"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _time_ratio(row: Row | None, base: Row | None) -> str:
    if row is None or base is None or not row.s_per_epoch or not base.s_per_epoch:
        return "—"
    return f"{row.s_per_epoch / base.s_per_epoch:.2f}"


def width_table(series: Sequence[WidthSeries]) -> str:
    """The width series as Markdown: validation bpc per row and width (mean ± std (n), the
    learning rate), the time per update relative to lstm at each width, and normprop's gaps to
    layer norm and batch norm with their standard errors."""
    widths = sorted({h for s in series for h in s.rows})
    columns = [f"H={h}" for h in widths]
    lstm = next((s.rows for s in series if s.variant == "lstm"), {})
    bpc, speed, gaps = [], [], []
    for s in series:
        paper_bpc = PAPER_TABLE1.get(s.variant, (None, None))[1]
        cells = [
            f"{_ours(s.rows[h], 3)}, lr {s.rates[h]:g}" if h in s.rows else "—" for h in widths
        ]
        bpc.append([s.name, *cells, _num(paper_bpc)])
        speed.append([s.name, *(_time_ratio(s.rows.get(h), lstm.get(h)) for h in widths)])
    for s in (s for s in series if s.variant == "normprop"):
        for other in (o for o in series if o.variant in ("layernorm", "batchnorm")):
            cells = [
                _gap(s.rows[h], other.rows[h]) if h in s.rows and h in other.rows else "—"
                for h in widths
            ]
            gaps.append([f"{s.name} − {other.name}", *cells])
    text = (
        "Validation bpc on length-100 windows by width (mean ± std (n) over seeds; at each width "
        "the best of the learning rates given):\n\n"
        + _markdown(["Row", *columns, "paper, H=1000"], bpc)
        + "\nTime per update relative to lstm at the same width (median `s_per_epoch` of the "
        "training logs, on the machine that trained each run):\n\n"
        + _markdown(["Row", *columns], speed)
    )
    if gaps:
        text += (
            "\nNormprop's gap in bpc (negative: normprop better), ± the standard error of the "
            "difference:\n\n" + _markdown(["Gap", *columns], gaps)
        )
    return text


# ----------------------------------------------------------------------------------------------
# Figure 1.


_DEFAULT_FLOW = gf.FlowConfig()


def _fmt_crossings(rows: list[tuple[float, float]]) -> str:
    return ", ".join(f"{gx:.3g}->{'none' if math.isnan(gh) else f'{gh:.3g}'}" for gx, gh in rows)


def figure1_report(
    config: gf.FlowConfig = _DEFAULT_FLOW,
    *,
    num: int = 12,
    low: float = 0.05,
    high: float = 4.0,
    gamma_cs: Sequence[float] = (0.1, 1.0),
    out_dir: str | pathlib.Path | None = None,
    vocab_size: int = 50,
) -> str:
    """Runs the Figure 1 study, writes its heatmaps and numbers, and returns a text summary.

    The summary gives, for every gamma_c, where the one-step norm and the T-step growth cross 1
    along gamma_h for each gamma_x of the grid; the measurements at the paper's gammas (PTB
    (2, 2, 1), DRAW (0.5, 0.5, 0.5)) with ``config.input_std`` and with the char LM's input
    scale ``1 / sqrt(vocab_size)`` (one-hot times an orthogonal matrix); and the
    :func:`nprnn.gradient_flow.critical_gammas` triple at gamma_c = 1, gamma_x = 2.

    Args:
      config: the simulation.
      num: points per axis.
      low: smallest gamma.
      high: largest gamma.
      gamma_cs: panels.
      out_dir: where to write ``figure1_<metric>.png`` and ``figure1.json``; None: nowhere.
      vocab_size: V of the char-LM input scale compared with.

    Returns:
      The summary text.
    """
    start = time.perf_counter()
    study = gf.figure1_study(gamma_cs, num, low, high, config)
    elapsed = time.perf_counter() - start
    if config.compensation == "released":
        form = "released form (s(gamma) constants)"
    else:
        form = f"eq. 15 with {config.variance_method} variance constants"
    lines = [
        f"Figure 1 study: normprop cell at initialization, H={config.hidden_size}, "
        f"B={config.batch_size}, burn-in {config.burn_in}, T={config.steps}, "
        f"input std {config.input_std:g}, {form}; "
        f"{num}x{num} grid of gamma_x, gamma_h in [{low:g}, {high:g}] for gamma_c in "
        f"{tuple(float(g) for g in gamma_cs)} ({elapsed:.1f}s).",
        "one-step norm = mean over examples and probe steps of ||dh_t/dh_{t-1}||_F / sqrt(H) "
        "(RMS singular value); growth = per-step geometric mean of ||dL/dh_0|| over T steps.",
    ]
    for metric in ("one_step_rms", "one_step_spectral", "growth"):
        for gc, rows in gf.crossings(study, metric).items():
            lines.append(
                f"{metric} = 1 at gamma_c={gc:g}, gamma_x->gamma_h: {_fmt_crossings(rows)}"
            )
    points = np.array([(gx, gh, gc) for gx, gh, gc, _ in FIGURE1_POINTS])
    names = [name for *_, name in FIGURE1_POINTS]
    char_std = 1.0 / math.sqrt(vocab_size)
    for std in (config.input_std, char_std):
        cfg = dataclasses.replace(config, input_std=std)
        out = gf.flow_metrics(points, cfg)
        for k, name in enumerate(names):
            lines.append(
                f"{name}, input std {std:.3g}: one-step {out['one_step_rms'][k]:.3f} "
                f"(spectral {out['one_step_spectral'][k]:.3f}), growth/step "
                f"{out['growth'][k]:.3f} (x{out['growth'][k] ** cfg.steps:.3g} over "
                f"T={cfg.steps}), Var[h] {out['var_h'][k]:.3f}"
            )
    for std in (config.input_std, char_std):
        crit = gf.critical_gammas(
            1.0, gamma_x=2.0, config=dataclasses.replace(config, input_std=std)
        )
        lines.append(
            f"critical gammas (gamma_c=1, gamma_x=2, input std {std:.3g}): "
            f"(gamma_x, gamma_h, gamma_c) = ({crit.gamma_x:.3g}, {crit.gamma_h:.3g}, "
            f"{crit.gamma_c:.3g}), growth/step {crit.growth:.3f}, Var[h] {crit.var_h:.3f}"
        )
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        for path in plot_figure1(study, out_dir):
            lines.append(f"wrote {path}")
        data = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in study.items()}
        (out_dir / "figure1.json").write_text(json.dumps(data) + "\n")
        lines.append(f"wrote {out_dir / 'figure1.json'}")
    return "\n".join(lines)
