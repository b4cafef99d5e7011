"""Evaluating a run's newest checkpoint; imports nprnn.training, nprnn.runs and nprnn.plots.

:func:`evaluate_run` loads the newest checkpoint of a run (:func:`nprnn.training.load_run`),
evaluates one split with one protocol, writes ``RUN/<eval file>``
(:func:`nprnn.runs.eval_filename`, format in :mod:`nprnn.runs`), and for a qualitative look
samples text (char LMs) or draws images (DRAW, PNGs in the run). :func:`stored_or_evaluate` is
what the tables use: the stored file when it is not older than the newest checkpoint, a fresh
evaluation otherwise. :func:`format_record` is the text ``eval.py --workdir=RUN`` prints.

The tables live in :mod:`nprnn.reports`, the figures in :mod:`nprnn.plots`, the paper's numbers
in :mod:`nprnn.paper`, the run-directory files in :mod:`nprnn.runs`.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax

from nprnn import plots, runs
from nprnn.training import evaluate_replicas, load_run, replica

__all__ = ["evaluate_run", "stored_or_evaluate", "format_record"]


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
      The record (see :mod:`nprnn.runs`), with ``"path"`` the file written. A run of
      ``train.num_seeds = K > 1`` replicas has a list of K values per metric (replica r: seed
      ``config.seed + r``); its samples come from replica 0.

    Raises:
      FileNotFoundError: the run has no config or no readable checkpoint.
      ValueError: for an unknown split or protocol.
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    workdir = pathlib.Path(workdir)
    config, task, state, step = load_run(workdir)
    char = config.task in runs.CHAR_TASKS
    if char and protocol not in runs.PROTOCOLS:
        raise ValueError(f"protocol must be one of {runs.PROTOCOLS}, got {protocol!r}")
    kwargs = {"max_batches": max_batches or None, "protocol": protocol}
    metrics = evaluate_replicas(config, task, state, split, **kwargs)
    if config.train.num_seeds > 1:  # samples from the first replica
        state = {k: replica(state[k], 0) for k in ("params", "consts", "model_state")}
    args = (state["params"], state["consts"], state["model_state"])
    record: dict[str, Any] = {
        "task": config.task,
        "variant": config.model.variant,
        "split": split,
        "protocol": protocol if char else None,
        "step": int(step),
        "max_batches": max_batches or None,
        "hidden_size": config.model.hidden_size,
        # One number per metric, or (train.num_seeds > 1) a list with one per replica.
        "metrics": {
            k: [float(x) for x in v] if isinstance(v, list) else float(v)
            for k, v in metrics.items()
        },
    }
    if samples and task.sample is not None:
        key = jax.random.key(seed)
        if char:
            record["sample"] = task.sample(*args, key)
        elif config.task == "draw":
            canvases = task.sample(*args, key, num=num_samples)
            record["images"] = [str(p) for p in plots.save_draw_images(canvases, workdir)]
    if write:
        path = workdir / runs.eval_filename(config.task, split, protocol)
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
    task = runs.read_config(workdir)["task"]
    path = workdir / runs.eval_filename(task, split, protocol or "windows")
    latest = runs.latest_checkpoint_step(workdir)
    if path.exists():
        record = json.loads(path.read_text())
        if latest is None or record.get("step", -1) >= latest or not evaluate:
            return record
    if evaluate and latest is not None:
        return evaluate_run(
            workdir, split, protocol or "windows", max_batches, samples=False, write=True
        )
    return None


def format_record(record: dict) -> str:
    """What ``eval.py --workdir=RUN`` prints for an :func:`evaluate_run` record.

    The task, variant, step, split (and protocol), the metrics but the example count, then the
    sampled text and the files written, one per line.
    """
    where = f"{record['split']}" + (f" ({record['protocol']})" if record["protocol"] else "")
    partial = f", first {record['max_batches']} batches" if record["max_batches"] else ""
    shown = {k: v for k, v in record["metrics"].items() if k != "count"}
    head = f"{record['task']} {record['variant']} step {record['step']}"
    lines = [f"{head}: {where}{partial}: {shown}"]
    if "sample" in record:
        lines.append("sample:\n" + record["sample"])
    lines += [f"wrote {path}" for path in record.get("images", [])]
    if "path" in record:
        lines.append(f"wrote {record['path']}")
    return "\n".join(lines)
