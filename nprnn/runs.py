"""A training run's files, read without loading a checkpoint; imports nothing from nprnn.

A run directory (what :func:`nprnn.training.train_and_evaluate` writes) holds ``config.json``,
``metrics.jsonl`` and ``checkpoints/<step>/``, and after ``eval.py --workdir=RUN`` one
evaluation file per (split, protocol) (:func:`eval_filename`)::

    {"task", "variant", "split", "protocol", "step", "max_batches", "hidden_size",
     "metrics": {"loss", "bpc" | "nats" | "accuracy", ...}, "sample": text (char LMs),
     "images": [png paths] (DRAW)}

Standard library only: plots and tables read runs without the training stack (orbax, models).
"""

from __future__ import annotations

import glob as globlib
import json
import os
import pathlib
import statistics
import time
from collections.abc import Iterable, Sequence

__all__ = [
    "ARCHIVE",
    "CHAR_TASKS",
    "PROTOCOLS",
    "archive_run",
    "config_key",
    "eval_filename",
    "read_config",
    "read_metrics",
    "replica_runs",
    "resolve_runs",
    "latest_checkpoint_step",
    "median_s_per_epoch",
    "steps_per_epoch",
]

#: The character-level language-model tasks (the only ones with two evaluation protocols).
CHAR_TASKS = ("ptb_char", "text8")
#: Char-LM evaluation protocols: independent length-T windows (Table 1), or the whole split as
#: contiguous streams with carried state (Table 2).
PROTOCOLS = ("windows", "stream")


#: The folder of a run directory where ``train.py --restart`` moves the run it replaces.
ARCHIVE = "archived"


#: The fields of ``train`` that say how a run's seeds were run, not what was trained.
REPLICA_FIELDS = ("num_seeds", "replicas")


def config_key(config: dict, *, ignore: Sequence[str] = ()) -> str:
    """What makes runs the same row of a table or figure: their config, less the seed, the data
    path, how the seeds were run (a run of 3 replicas is a row with 3 separate runs of the seeds,
    vmapped or in processes) and the dotted fields ``ignore`` (e.g. ``"model.hidden_size"``), as
    a string that equal configs share."""
    config = json.loads(json.dumps(config))  # a deep copy
    config.pop("seed", None)
    config.get("data", {}).pop("dir", None)
    for field in REPLICA_FIELDS:
        config.get("train", {}).pop(field, None)
    for dotted in ignore:
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node.get(part, {})
        node.pop(last, None)
    return json.dumps(config, sort_keys=True, default=str)


def archive_run(workdir: str | os.PathLike) -> pathlib.Path | None:
    """Moves everything in a run directory except earlier archives to
    ``workdir/archived/<YYYYmmdd-HHMMSS>/``, so that a new run can start there and the old one
    is kept whole. Returns the archive, or None if there was nothing to move."""
    workdir = pathlib.Path(workdir)
    entries = [p for p in workdir.iterdir() if p.name != ARCHIVE] if workdir.is_dir() else []
    if not entries:
        return None
    dest = workdir / ARCHIVE / time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while dest.exists():  # two restarts within a second
        dest, n = dest.with_name(f"{dest.name.split('.')[0]}.{n}"), n + 1
    dest.mkdir(parents=True)
    for entry in entries:
        entry.rename(dest / entry.name)
    return dest


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


def replica_runs(workdir: str | os.PathLike) -> list[pathlib.Path]:
    """The seed runs ``workdir/seed<s>`` of a ``train.replicas="processes"`` run (a directory
    without config.json of its own), sorted by seed; [] for anything else."""
    path = pathlib.Path(workdir)
    if (path / "config.json").exists():
        return []
    found = [p for p in path.glob("seed*") if (p / "config.json").exists() and p.name[4:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[4:]))


def resolve_runs(runs: str | Sequence[str] | None = None, runs_glob: str | None = None) -> list:
    """Run directories from a comma-separated list and/or a glob (runs without config.json from
    the glob are skipped; listed runs must exist). A directory of seed runs
    (:func:`replica_runs`) stands for its seeds.

    Raises:
      FileNotFoundError: a listed run has no config.json, or nothing was given or matched.
    """
    out: list[pathlib.Path] = []
    if isinstance(runs, str):
        runs = [r for r in runs.split(",") if r.strip()]
    for run in runs or ():
        path = pathlib.Path(run.strip())
        if not (path / "config.json").exists() and not replica_runs(path):
            raise FileNotFoundError(f"{path / 'config.json'} not found: not a training run")
        out.extend(replica_runs(path) or [path])
    if runs_glob:
        for match in sorted(globlib.glob(runs_glob)):
            for path in replica_runs(match) or [pathlib.Path(match)]:
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


def steps_per_epoch(records: Iterable[dict]) -> float | None:
    """Updates per epoch, from the first training line of metrics.jsonl that has both
    ``s_per_epoch`` and ``steps_per_s`` (None if none has)."""
    for r in records:
        if r.get("split") == "train" and r.get("s_per_epoch") and r.get("steps_per_s"):
            return r["s_per_epoch"] * r["steps_per_s"]
    return None
