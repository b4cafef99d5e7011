"""Several seeds as separate single-threaded processes (``train.replicas="processes"``); imports
nprnn.configs, nprnn.runs and nprnn.training.

``train.num_seeds = K`` trains the runs of seeds ``config.seed + r``, r < K. By default
(``train.replicas = "vmap"``) they are K replicas in one jitted step (:mod:`nprnn.training`),
which is what a GPU wants. On a CPU of a few cores, one single-threaded process per core does
more updates per second (BENCHMARKS.md, "Several seeds in one process": two pinned processes
took 10-11 ms per seed-update on 2 cores, vmap 17-18 ms). ``train.replicas = "processes"`` runs
them so: each seed is an ordinary run (``num_seeds = 1``) in ``<workdir>/seed<s>``, trained in a
spawned process pinned to one core with XLA's CPU thread pool off, as many at a time as there are
cores. Resuming works per seed, as for any run; ``eval.py --workdir=<workdir>`` and the tables
find the seeds (:func:`nprnn.runs.replica_runs`).

May import from nprnn: ``nprnn.configs``, ``nprnn.runs``, ``nprnn.training``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pathlib
import sys

from absl import logging

from nprnn import configs, runs, training

__all__ = ["SINGLE_THREAD_XLA_FLAGS", "ReplicaFailed", "seed_configs", "train_in_processes"]

#: XLA:CPU flags of a replica process: no intra-op thread pool (one core each).
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


class ReplicaFailed(RuntimeError):
    """A seed's process ended with an error (its log is named in the message)."""


def seed_configs(config) -> list:
    """The configs of the K single runs: ``num_seeds = 1``, seed ``config.seed + r``."""
    out = []
    for r in range(config.train.num_seeds):
        c = config.copy_and_resolve_references()
        with c.unlocked():
            c.seed = config.seed + r
            c.train.num_seeds = 1
            c.train.replicas = "vmap"
        out.append(c)
    return out


def _child(config, workdir: str, core: int | None, restart: bool = False) -> None:
    """A replica process: pinned to ``core``, single-threaded XLA, its log in ``workdir``."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_XLA_FLAGS
    ).strip()
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    log = open(pathlib.Path(workdir) / "train.log", "a")  # noqa: SIM115 (lives with the process)
    os.dup2(log.fileno(), sys.stdout.fileno())
    os.dup2(log.fileno(), sys.stderr.fileno())
    training.train_and_evaluate(config, workdir, restart=restart)


def train_in_processes(
    config, workdir: str | os.PathLike, cores=None, *, restart: bool = False
) -> dict:
    """Trains the K seeds of ``config`` as separate processes, one per core at a time.

    Args:
        config: a config with ``train.num_seeds = K``.
        workdir: the parent directory; seed s goes to ``workdir/seed<s>`` (its log: ``train.log``).
        cores: the CPU ids to pin to (default: those this process may run on).
        restart: archive a run already in each seed's directory and start over
            (:func:`nprnn.training.train_and_evaluate`).

    Returns:
        The last validation metrics, each a list over the seeds (as a vmap run reports them).

    Raises:
        ValueError: for a bad config.
        nprnn.training.RunMismatch: a seed's directory holds a run of another configuration
            (checked for every seed before any process starts).
        ReplicaFailed: if a seed's process fails (its log is named); the others are stopped.
    """
    configs.validate(config)
    cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
    workdir = pathlib.Path(workdir)
    jobs = [(c, workdir / f"seed{c.seed}") for c in seed_configs(config)]
    if not restart:
        for seed_config, seed_dir in jobs:
            training.check_workdir(seed_config, seed_dir)
    logging.info(
        "%d seeds as separate processes, %d at a time (cores %s): %s",
        len(jobs),
        len(cores),
        cores,
        ", ".join(str(d) for _, d in jobs),
    )
    context = multiprocessing.get_context("spawn")  # a fresh JAX in every child
    running: dict = {}  # core -> (process, workdir)
    pending = list(jobs)
    while pending or running:
        for core in [c for c in cores if c not in running][: len(pending)]:
            seed_config, seed_dir = pending.pop(0)
            process = context.Process(
                target=_child, args=(seed_config, str(seed_dir), core, restart)
            )
            process.start()
            running[core] = (process, seed_dir)
        multiprocessing.connection.wait([p.sentinel for p, _ in running.values()])
        for core, (process, seed_dir) in list(running.items()):
            if process.exitcode is None:
                continue
            del running[core]
            if process.exitcode != 0:
                for other, _ in running.values():
                    other.terminate()
                raise ReplicaFailed(
                    f"the seed run in {seed_dir} failed (exit code {process.exitcode}); "
                    f"see {seed_dir / 'train.log'}"
                )
            logging.info("seed run %s finished", seed_dir)
    finals = [_last_valid(d) for _, d in jobs]
    return {k: [f[k] for f in finals] for k in finals[0]}


def _last_valid(workdir: pathlib.Path) -> dict:
    """The metrics of the last validation line of a run's metrics.jsonl."""
    valid = [r for r in runs.read_metrics(workdir) if r.get("split") == "valid"]
    if not valid:
        raise ReplicaFailed(f"{workdir / 'metrics.jsonl'} has no validation line")
    return {k: v for k, v in valid[-1].items() if k not in ("step", "split")}
