"""The training loop: one jitted step, evaluation, metrics, orbax checkpoints, exact resume;
imports nprnn._validate, nprnn.checkpoints, nprnn.configs, nprnn.distributed, nprnn.projection,
nprnn.runs and nprnn.tasks.

``train_and_evaluate(config, workdir)`` trains the task of ``config`` (see ``configs/``) and
writes into ``workdir``:

* ``config.json``: the resolved config;
* ``metrics.jsonl``: one JSON object per logging step (``step``, ``split``, ``loss``, ``bpc`` /
  ``nats`` / ``accuracy``, ``grad_norm``, ``learning_rate``, ``steps_per_s``, ``s_per_epoch``);
* ``checkpoints/<step>/``: orbax checkpoints of the whole training state (params, consts,
  model state with batch-norm statistics, optimizer state, step, PRNG key). The data position
  is the step: every batch is a pure function of ``(seed, step)``.

Running the same command again resumes from the newest readable checkpoint; an unreadable one
(truncated, corrupt) is reported, moved aside, and the previous one is used. A run directory holds
one configuration: a rerun that changes the model, the data or the optimizer stops with the
differing fields named (:func:`check_workdir`). A resumed run ends with exactly
the parameters of an uninterrupted one (same seed, same machine). A NaN or Inf loss stops the run
with a message naming the step, keeping the last good checkpoint: the check runs on the device at
every update and is read where a step logs, evaluates or saves (no per-update host sync), so
nothing diverged is ever logged or saved.

Several processes (``train.py --distributed``, :mod:`nprnn.distributed`) run this same loop on
one mesh of all their devices, data parallel; process 0 alone writes the run's files and reports
progress, and every process takes part in orbax's saves and restores.

May import from nprnn: ``nprnn._validate``, ``nprnn.checkpoints``,
``nprnn.configs``, ``nprnn.distributed``, ``nprnn.projection`` (the unit-norm projection, last in
the optimizer's chain), ``nprnn.runs`` and ``nprnn.tasks``.
Reports go to absl logging, never to stdout.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from tqdm import tqdm

from nprnn import _validate, checkpoints, configs, distributed, projection, runs
from nprnn.tasks import build_task

__all__ = [
    "QuietOrbax",
    "RunMismatch",
    "TrainingDiverged",
    "check_workdir",
    "evaluate_replicas",
    "initial_states",
    "load_run",
    "make_optimizer",
    "replica",
    "train_and_evaluate",
]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf."""


def make_optimizer(
    opt, steps_per_epoch: int, projections: dict | None = None
) -> tuple[optax.GradientTransformation, Any]:
    """Adam with global-norm clipping and a decaying learning rate, then the unit-norm projection.

    With ``k`` the update count and ``period`` 1 (``opt.decay_every="update"``) or the number of
    updates per epoch (``"epoch"``), continuous rather than a staircase:

    * ``opt.schedule="exponential"``: ``opt.learning_rate * (1 - opt.decay) ** (k / period)``;
    * ``opt.schedule="inverse_time"``: ``opt.learning_rate / (1 + opt.decay * k / period)``, the
      schedule of the authors' released DRAW code.

    ``projections`` (``{"cells": bool, "linears": bool}``), where one is true, puts
    :func:`nprnn.projection.unit_norm_projection` last in the chain: the updated weights of the
    weight-normalized layers land on unit-norm columns (the paper's section 3.3).

    Returns:
        ``(optimizer, schedule)``.
    """
    _validate.one_of("opt.decay_every", opt.decay_every, ("update", "epoch"))
    _validate.one_of("opt.schedule", opt.schedule, ("exponential", "inverse_time"))
    _validate.probability("opt.decay", opt.decay)
    period = 1 if opt.decay_every == "update" else steps_per_epoch
    if opt.schedule == "inverse_time":
        lr, decay = opt.learning_rate, opt.decay

        def schedule(count):
            return lr / (1.0 + decay * count / period)

    else:
        schedule = optax.exponential_decay(
            opt.learning_rate, transition_steps=period, decay_rate=1.0 - opt.decay
        )
    parts = []
    if opt.clip_norm and opt.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt.clip_norm))
    parts.append(optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps))
    if projections and any(projections.values()):
        parts.append(projection.unit_norm_projection(**projections))
    return optax.chain(*parts), schedule


class QuietOrbax:
    """An absl log filter that drops orbax's INFO chatter (a dozen lines per checkpoint).

    ``logging.get_absl_handler().addFilter(QuietOrbax())``; ``train.py`` installs it.
    """

    def filter(self, record) -> bool:
        return record.levelno >= 30 or "orbax" not in record.pathname


def _write_jsonl(path: pathlib.Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _keep_metrics(path: pathlib.Path, last_step: int, keep_dropped=None) -> None:
    """Keeps the metric lines of steps up to ``last_step`` (the resumed run writes the later
    ones again). With ``keep_dropped`` (a file), the lines dropped are moved there rather than
    lost: what a run logged after a checkpoint that turned out unreadable is kept for the user."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept, dropped = [], []
    for line in lines:
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            dropped.append(line)  # a line cut short by a killed run
            continue
        (kept if step <= last_step else dropped).append(line)
    if dropped and keep_dropped is not None:
        keep_dropped.parent.mkdir(parents=True, exist_ok=True)
        keep_dropped.write_text("".join(line + "\n" for line in dropped))
        logging.warning(
            "metrics.jsonl: the %d lines after step %d are kept in %s",
            len(dropped),
            last_step,
            keep_dropped,
        )
    path.write_text("".join(line + "\n" for line in kept))


class RunMismatch(ValueError):
    """A run directory holds a run of another configuration than the one given."""


def check_workdir(config, workdir: str | os.PathLike) -> None:
    """Refuses to resume a run directory with a config that changes the run.

    Only :data:`nprnn.configs.RESUMABLE_FIELDS` may differ from the run's ``config.json``
    (extending ``train.num_steps``, the logging and checkpoint cadence, the data's location).
    Reads, never writes.

    Raises:
        RunMismatch: naming each differing field, the run directory, and the two ways on: a new
            workdir, or ``--restart`` (:func:`nprnn.runs.archive_run`).
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        return
    differences = configs.resume_differences(json.loads(path.read_text()), config)
    if differences:
        raise RunMismatch(
            f"{workdir} holds a run of another configuration; resuming it with this one would "
            f"mix two runs. Differing fields:\n  "
            + "\n  ".join(differences)
            + f"\nUse a new --workdir, or --restart to move the run in {workdir} to "
            f"{pathlib.Path(workdir) / runs.ARCHIVE}/<time>/ (nothing is deleted) and start "
            f"over. Fields that may change on resume: {', '.join(configs.RESUMABLE_FIELDS)}."
        )


def _projections(config) -> dict:
    """What is projected to unit norm after every update (and at step 0): the keyword arguments
    of :func:`nprnn.projection.project_tree`."""
    return {
        "cells": configs.unit_norm_projection(config),
        "linears": config.task == "draw" and config.model.weight_norm_linear,
    }


def _initial_state(config, task, tx, seed: int) -> dict:
    """The training state at step 0 of the run of ``seed``."""
    init_key, train_key = jax.random.split(jax.random.key(seed))
    params, consts, model_state = task.init(init_key)
    params = projection.project_tree(params, **_projections(config))
    return {
        "params": params,
        "consts": consts,
        "model_state": model_state,
        "opt_state": tx.init(params),
        "step": jnp.asarray(0, jnp.int32),
        "rng": jax.random.key_data(train_key),
    }


def _seeds(config) -> list[int]:
    """The seed of every replica: ``config.seed + r`` for ``r < config.train.num_seeds``."""
    return [config.seed + r for r in range(config.train.num_seeds)]


def _stack(trees):
    """Stacks pytrees of one structure along a new leading (replica) axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def initial_states(config, task, tx) -> dict:
    """The training state at step 0, also the restore target of every checkpoint: the run's, or
    with ``train.num_seeds = K > 1`` the K replicas' stacked along a leading axis."""
    if config.train.num_seeds == 1:
        return _initial_state(config, task, tx, config.seed)
    return _stack([_initial_state(config, task, tx, seed) for seed in _seeds(config)])


def replica(tree, r: int):
    """Replica ``r`` of a stacked pytree (``num_seeds > 1``)."""
    return jax.tree.map(lambda leaf: leaf[r], tree)


def evaluate_replicas(config, task, state, split: str, **kwargs) -> dict:
    """``task.evaluate`` on ``split``: its metrics, or with ``num_seeds > 1`` a list per metric
    with one value per replica (replica r is the run of seed ``config.seed + r``)."""
    parts = ("params", "consts", "model_state")
    if config.train.num_seeds == 1:
        return task.evaluate(*(state[k] for k in parts), split, **kwargs)
    per = [
        task.evaluate(*(replica(state[k], r) for k in parts), split, **kwargs)
        for r in range(config.train.num_seeds)
    ]
    return {name: [float(m[name]) for m in per] for name in per[0]}


def _local(value) -> np.ndarray:
    """A host copy of ``value``. A global array of several processes is read from this process's
    own copy where it is replicated (the loss, the step: no communication), else gathered (a
    collective: every process must read it at the same point)."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        if value.is_fully_replicated:
            return np.asarray(value.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def _host(value):
    """A float, or a list of floats (one per replica)."""
    array = _local(value).astype(np.float64)
    return float(array) if array.ndim == 0 else array.tolist()


def _check_processes(config) -> None:
    """Several processes train one run, data parallel over all their devices (the state
    replicated, each batch split); replicas (``num_seeds > 1``) and ``data_parallel=False`` would
    make each process train a copy of its own."""
    if jax.process_count() == 1:
        return
    problems = []
    if config.train.num_seeds != 1:
        problems.append(f"train.num_seeds = {config.train.num_seeds} (must be 1)")
    if not config.train.data_parallel:
        problems.append("train.data_parallel = False (must be True)")
    if problems:
        raise ValueError(
            f"a run over {jax.process_count()} processes trains one model data parallel: "
            + "; ".join(problems)
        )


def _scaled(value, factor: float):
    return [v * factor for v in value] if isinstance(value, list) else value * factor


def train_and_evaluate(config, workdir: str | os.PathLike, *, restart: bool = False) -> dict:
    """Trains and evaluates the task of ``config``; resumes from ``workdir`` if it has a run.

    A run directory holds one run: resuming it with a config that differs in anything but
    :data:`nprnn.configs.RESUMABLE_FIELDS` stops before any file is touched
    (:func:`check_workdir`). Unreadable checkpoints are moved to ``unreadable_checkpoints/`` and
    the run resumes from the newest readable one; ``metrics.jsonl`` keeps its lines up to that
    step, and the later ones, if a checkpoint was unreadable, are moved next to it.

    Args:
        config: an ml_collections ConfigDict (see ``configs/``).
        workdir: directory of the run.
        restart: first move a run already in ``workdir`` to ``workdir/archived/<time>/``
            (:func:`nprnn.runs.archive_run`; nothing is deleted) and start from step 0.

    Under several processes (:mod:`nprnn.distributed`) every process calls this with the same
    config and workdir (a directory all of them see); process 0 writes the files, the others wait
    at barriers where they must see them, and all take part in checkpointing.

    Returns:
        The last validation metrics.

    Raises:
        ValueError: for a bad config (every problem listed, before anything is written), or, in
            a multi-process run, ``train.num_seeds > 1`` or ``train.data_parallel=False``.
        RunMismatch: ``workdir`` holds a run of another configuration.
        nprnn.checkpoints.CheckpointMismatch: a readable checkpoint does not fit the model the
            code builds (nothing is moved).
        TrainingDiverged: if the loss becomes NaN or Inf.
    """
    configs.validate(config)
    _check_processes(config)
    workdir = pathlib.Path(workdir)
    primary = distributed.is_primary()  # writes the files; the only process of most runs
    if restart:
        if primary:
            archived = runs.archive_run(workdir)
            if archived:
                logging.warning("moved the run in %s to %s; starting over", workdir, archived)
        distributed.barrier("nprnn:archived")
    check_workdir(config, workdir)
    distributed.barrier("nprnn:checked")  # every process has read config.json before it changes
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    task = build_task(config)
    tx, schedule = make_optimizer(config.opt, task.steps_per_epoch, _projections(config))
    state = initial_states(config, task, tx)
    tc = config.train
    if tc.num_seeds == 1:  # placed before the restore, which then restores onto the mesh
        shard_batch, state = _data_parallel(config, task, state)

    manager = checkpoints.manager(workdir / "checkpoints", keep=config.train.keep_checkpoints)
    quarantine = workdir / "unreadable_checkpoints"
    restored, restored_step, unreadable = checkpoints.restore_latest(manager, state, quarantine)
    if restored is not None:
        state = restored
        logging.info("resumed from step %d (the newest readable checkpoint)", restored_step)
    metrics_path = workdir / "metrics.jsonl"
    if primary:
        _keep_metrics(
            metrics_path,
            restored_step or 0,
            keep_dropped=(
                quarantine
                / f"metrics-after-{restored_step or 0}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
                if unreadable
                else None
            ),
        )

    def train_step(state, batch):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

        def loss_fn(params):
            return task.loss(params, state["consts"], state["model_state"], batch, key, True)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)  # projected by tx
        new_state = dict(
            state,
            params=params,
            opt_state=opt_state,
            model_state=task.update_state(state["model_state"], aux["moments"]),
            step=state["step"] + 1,
        )
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    seeds = _seeds(config)
    if tc.num_seeds == 1:
        host_batch = task.train_batch
    else:  # the replicas in one program: jax.vmap over the leading axis of state and batch
        train_step = jax.vmap(train_step)
        shard_batch = _stack
        logging.info("%d replicas (seeds %s) in one jitted step", tc.num_seeds, seeds)

        def host_batch(step):
            return [task.train_batch(step, seed) for seed in seeds]

    def step_and_watch(state, health, batch):
        state, out = train_step(state, batch)
        return state, _watch(health, state["step"], out), out

    step_and_watch = jax.jit(step_and_watch, donate_argnums=(0, 1))
    start = int(_local(state["step"]).reshape(-1)[0])
    health = _healthy(tc.num_seeds)
    metric = task.metric
    last_eval: dict = {}
    t_last, steps_since = time.perf_counter(), 0
    progress = _progress(start, tc.num_steps, enabled=primary)
    for step in range(start, tc.num_steps):
        batch = shard_batch(host_batch(step))
        state, health, out = step_and_watch(state, health, batch)
        steps_since += 1
        done = step + 1
        progress.update(1)
        logs = done % tc.log_every == 0 or done == tc.num_steps
        evaluates = done % tc.eval_every == 0 or done == tc.num_steps
        saves = done % tc.checkpoint_every == 0 or done == tc.num_steps
        if logs or evaluates or saves:  # the one read of the device here: nothing bad is kept
            _stop_if_diverged(health, manager, workdir)
        if logs:
            loss, grad_norm = _host(out["loss"]), _host(out["grad_norm"])
            now = time.perf_counter()
            rate = steps_since / max(now - t_last, 1e-9)
            t_last, steps_since = now, 0
            record = {
                "step": done,
                "split": "train",
                "loss": loss,
                "grad_norm": grad_norm,
                "learning_rate": float(schedule(done - 1)),
                "steps_per_s": rate,
                "s_per_epoch": task.steps_per_epoch / rate,
            }
            if metric == "bpc":
                record["bpc"] = _scaled(loss, 1.0 / math.log(2.0))
            elif metric == "nats":
                record["nats"] = loss
            if primary:
                _write_jsonl(metrics_path, record)
                progress.set_postfix(loss=f"{np.mean(loss):.4f}")
                logging.info("step %d: train loss %s (%.2f steps/s)", done, loss, rate)
        if evaluates:
            t0 = time.perf_counter()
            last_eval = evaluate_replicas(
                config, task, state, "valid", max_batches=tc.eval_batches or None
            )
            record = {"step": done, "split": "valid", **last_eval}
            if primary:
                _write_jsonl(metrics_path, record)
                logging.info("step %d: valid %s (%.1fs)", done, last_eval, time.perf_counter() - t0)
            t_last = time.perf_counter()  # evaluation time does not count in the step rate
        if saves:  # by every process: orbax coordinates them, process 0 commits
            manager.save(done, args=ocp.args.StandardSave(state))
    progress.close()
    manager.wait_until_finished()
    manager.close()
    return last_eval


def _healthy(num_seeds: int) -> dict:
    """What :func:`_watch` keeps on the device: the first update whose loss or gradient norm was
    not finite (``step`` 0: none yet) and those two values then (one per replica)."""
    shape = () if num_seeds == 1 else (num_seeds,)
    return {
        "step": jnp.zeros((), jnp.int32),
        "loss": jnp.zeros(shape, jnp.float32),
        "grad_norm": jnp.zeros(shape, jnp.float32),
    }


def _watch(health: dict, step, out: dict) -> dict:
    """``health`` after the update that made the state of ``step``: on the device, so that the
    loop need not read the loss back at every update (which would stall the dispatch queue)."""
    bad = ~(jnp.all(jnp.isfinite(out["loss"])) & jnp.all(jnp.isfinite(out["grad_norm"])))
    first = (health["step"] == 0) & bad
    step = jnp.max(step).astype(jnp.int32)
    return {
        "step": jnp.where(first, step, health["step"]),
        "loss": jnp.where(first, out["loss"].astype(jnp.float32), health["loss"]),
        "grad_norm": jnp.where(first, out["grad_norm"].astype(jnp.float32), health["grad_norm"]),
    }


def _stop_if_diverged(health: dict, manager, workdir: pathlib.Path) -> None:
    """Raises :class:`TrainingDiverged` if an update since the start had a NaN or Inf loss or
    gradient norm, naming that update; called before anything is logged, evaluated or saved, so
    that no checkpoint or metric line holds the diverged state."""
    bad_step = int(_local(health["step"]))
    if bad_step == 0:
        return
    loss, grad_norm = _host(health["loss"]), _host(health["grad_norm"])
    manager.wait_until_finished()
    good = manager.latest_step()
    what = "loss" if not np.all(np.isfinite(loss)) else "gradient norm"
    raise TrainingDiverged(
        f"the training {what} is {loss if what == 'loss' else grad_norm} at step {bad_step}; "
        f"stopping. The last good checkpoint (step {good}) is kept in {workdir / 'checkpoints'}."
    )


def _data_parallel(config, task, state):
    """Data parallelism over all local devices with ``jax.sharding`` (GSPMD).

    The batch is split along its batch axis over a one-dimensional mesh ``("data",)`` and the
    training state is replicated; XLA partitions the jitted step and inserts the all-reduces of
    the gradients (and of batch-norm statistics, which are means over the whole batch). With one
    device, or ``config.train.data_parallel=False``, nothing changes. Several processes
    (``train.py --distributed``, :func:`nprnn.distributed.initialize` first): the mesh holds
    every process's devices; every process computes the same global batch and places the slices
    its own devices hold, and the state placed here is the same in every process.

    Returns:
      ``(shard_batch, state)``: a function placing a host batch on the mesh, and the state
      placed (replicated) on it.
    """
    devices = jax.devices()
    if not config.train.data_parallel or len(devices) == 1:
        return (lambda batch: batch), state
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    shardings = [
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*([None] * axis + ["data"])))
        for axis in task.batch_axes
    ]
    n = len(devices)

    def shard_batch(batch):
        for array, axis in zip(batch, task.batch_axes, strict=True):
            if array.shape[axis] % n:
                raise ValueError(
                    f"the batch size {array.shape[axis]} is not divisible by the {n} devices"
                )
        # Every host computes the same global batch (a pure function of seed and step) and
        # places the slices its devices own: the same code for one host and for many.
        return tuple(_place(np.asarray(a), sh) for a, sh in zip(batch, shardings, strict=True))

    logging.info("data parallel over %d devices (%d processes)", n, jax.process_count())
    # Placed from host copies: jax.device_put onto other processes' devices would first check
    # that every process holds the same values (one collective per array), which they do by
    # construction (the state of the same seed, or the same checkpoint).
    return shard_batch, jax.tree.map(lambda a: _place(_local(a), replicated), state)


def _place(array: np.ndarray, sharding) -> jax.Array:
    """A global array from a host copy, each device taking its own slice."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _progress(start: int, total: int, *, enabled: bool = True):
    """A tqdm progress bar (rate and ETA) on stderr; silent when not attached to a terminal, and
    where not ``enabled`` (the processes other than 0 of a multi-process run)."""
    return tqdm(
        total=total,
        initial=start,
        unit="step",
        dynamic_ncols=True,
        disable=None if enabled else True,  # None: off when stderr is not a TTY (CI, log files)
        smoothing=0.1,
    )


def load_run(workdir: str | os.PathLike, config=None):
    """Loads the newest readable checkpoint of a run for evaluation.

    The stored config is read over :func:`nprnn.configs.base_config`
    (:func:`nprnn.configs.with_defaults`), so that a run saved before a field existed loads with
    that field's default, then validated.

    Args:
        workdir: a training run's directory.
        config: its config (read from ``workdir/config.json`` if None).

    Returns:
        ``(config, task, state, step)``.

    Raises:
        FileNotFoundError: if the run has no config or no readable checkpoint.
        ValueError: for a bad config (every problem listed).
    """
    workdir = pathlib.Path(workdir)
    if config is None:
        path = workdir / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {workdir} a training run directory?")
        config = json.loads(path.read_text())
    config = configs.with_defaults(config)
    task = build_task(config)  # validates the config
    tx, _ = make_optimizer(config.opt, task.steps_per_epoch, _projections(config))
    target = initial_states(config, task, tx)
    manager = checkpoints.manager(workdir / "checkpoints")
    state, step, _ = checkpoints.restore_latest(manager, target)
    manager.close()
    if state is None:
        raise FileNotFoundError(f"no readable checkpoint under {workdir / 'checkpoints'}")
    return config, task, state, step
