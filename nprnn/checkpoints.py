"""A run's orbax checkpoints: the newest readable one restored, an unreadable one moved aside, one
that does not fit the model refused; imports nothing from nprnn.

Three things can stand between a run and its newest checkpoint, and each is treated apart:

* the checkpoint holds arrays of other shapes, dtypes or names than the state the code builds
  (a changed config, or a change to the code): :class:`CheckpointMismatch`, and nothing is
  moved. :func:`nprnn.training.train_and_evaluate` compares the configs before it gets here, so
  at this point only a change to the code can cause it;
* the checkpoint is unreadable (truncated, corrupt): it is moved to the quarantine directory and
  the next older one is tried;
* the file system fails (``OSError``: a permission, a lost mount): raised as it is, and nothing
  is moved, since the checkpoint may be intact.

Only a real corrupt checkpoint reaches orbax's restore and fails there; tensorstore then prints a
``RuntimeError: Event loop is closed`` traceback for each read still in flight (from its own
threads, past Python's exception hooks). They follow the warning that names the checkpoint and
change nothing.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

__all__ = ["CheckpointMismatch", "manager", "restore_latest"]


class CheckpointMismatch(ValueError):
    """A readable checkpoint whose arrays do not fit the state the code builds."""


def manager(directory: str | os.PathLike, keep: int | None = None) -> ocp.CheckpointManager:
    """An orbax CheckpointManager of ``StandardSave`` items in ``directory`` (made absolute),
    keeping the newest ``keep`` (all if None)."""
    return ocp.CheckpointManager(
        pathlib.Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep),
        item_handlers=ocp.StandardCheckpointHandler(),
    )


def _key(path) -> str:
    """One entry of a pytree path as a plain name: a dict key, an attribute (a NamedTuple's
    field, which orbax stores as a dict key) or a sequence index."""
    for attr in ("key", "name", "idx"):
        if hasattr(path, attr):
            return str(getattr(path, attr))
    return str(path)


def _signature(tree) -> dict[str, tuple]:
    """``{"params/head/w": (shape, dtype)}`` of the array leaves of a pytree (or of orbax's
    metadata tree); PRNG key data and scalars included."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = "/".join(_key(p) for p in path)
        out[name] = (tuple(np.shape(leaf)), np.dtype(leaf.dtype).name)
    return out


def mismatches(stored_metadata, target) -> list[str]:
    """How a checkpoint's arrays (orbax's metadata tree) differ from ``target``'s, one line per
    array: missing, unexpected, or of another shape or dtype."""
    stored, wanted = _signature(stored_metadata), _signature(target)
    lines = [f"{k}: not in the checkpoint" for k in sorted(wanted.keys() - stored.keys())]
    lines += [f"{k}: in the checkpoint only" for k in sorted(stored.keys() - wanted.keys())]
    for k in sorted(stored.keys() & wanted.keys()):
        if stored[k] != wanted[k]:
            (s_shape, s_dtype), (w_shape, w_dtype) = stored[k], wanted[k]
            lines.append(f"{k}: {s_shape} {s_dtype} stored, {w_shape} {w_dtype} expected")
    return lines


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _move_aside(mgr: ocp.CheckpointManager, step: int, quarantine: pathlib.Path) -> None:
    """Moves checkpoint ``step`` into ``quarantine``: by process 0 alone when several processes
    share the run (``jax.distributed``), the others waiting until it is done."""
    several = jax.process_count() > 1
    if several:  # every process has finished reading it
        multihost_utils.sync_global_devices(f"nprnn:unreadable:{step}")
    if jax.process_index() == 0:
        quarantine.mkdir(parents=True, exist_ok=True)
        dest = quarantine / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.move(str(pathlib.Path(mgr.directory) / str(step)), dest)
        logging.warning("moved the unreadable checkpoint to %s", dest)
    if several:
        multihost_utils.sync_global_devices(f"nprnn:moved:{step}")
    mgr.reload()


def restore_latest(mgr: ocp.CheckpointManager, target, quarantine=None):
    """Restores the newest readable checkpoint of ``mgr`` into the structure of ``target``.

    Args:
        mgr: from :func:`manager`.
        target: a pytree of the state's structure, shapes and dtypes (the state at step 0).
        quarantine: a directory; unreadable checkpoints are moved there, so that the resumed
            run can save those steps again. None: they are skipped and left in place.

    Returns:
        ``(state, step, unreadable)``: the restored state and its step, or ``None, None`` and
        the list if no checkpoint is readable; ``unreadable`` lists the steps found unreadable.

    Raises:
        CheckpointMismatch: a readable checkpoint's arrays differ from ``target``'s (the
            message lists them); nothing is moved.
        OSError: the file system failed; nothing is moved.
    """
    unreadable = []
    for step in sorted(mgr.all_steps(), reverse=True):
        try:
            metadata = mgr.item_metadata(step)
            stored = getattr(metadata, "tree", metadata)
            if stored is None:
                raise ValueError("no metadata")
        except OSError as err:
            if not isinstance(err, FileNotFoundError):
                raise
            problem = _first_line(err)
        except Exception as err:  # noqa: BLE001 - unreadable metadata: a corrupt checkpoint
            problem = _first_line(err)
        else:
            lines = mismatches(stored, target)
            if lines:
                raise CheckpointMismatch(
                    f"the checkpoint at step {step} in {mgr.directory} does not fit the model "
                    f"this code builds ({len(lines)} arrays differ):\n  "
                    + "\n  ".join(lines[:10])
                    + ("\n  ..." if len(lines) > 10 else "")
                )
            try:
                return mgr.restore(step, args=ocp.args.StandardRestore(target)), step, unreadable
            except OSError as err:
                if not isinstance(err, FileNotFoundError):
                    raise
                problem = _first_line(err)
            except Exception as err:  # noqa: BLE001 - its arrays fit but do not read: corrupt
                problem = _first_line(err)
        logging.warning(
            "checkpoint at step %d is unreadable (%s) in %s; using an older one",
            step,
            problem,
            mgr.directory,
        )
        unreadable.append(step)
        if quarantine is not None:
            _move_aside(mgr, step, pathlib.Path(quarantine))
    return None, None, unreadable
