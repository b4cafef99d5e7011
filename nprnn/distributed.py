"""Training over several processes (one per host): starting JAX's distributed runtime, which
process writes files, barriers, and naming a lost peer; imports nothing from nprnn.

``train.py --distributed`` calls :func:`initialize` before any JAX computation. Every process then
runs the same training loop (:func:`nprnn.training.train_and_evaluate`) on a global mesh of all
processes' devices: each computes the same global batch (a pure function of seed and step) and
places the slices its own devices hold, XLA all-reduces the gradients, and the state is
replicated. What writes files (``config.json``, ``metrics.jsonl``, archiving a run, moving an
unreadable checkpoint aside) is done by process 0 alone (:func:`is_primary`), the others waiting
at a :func:`barrier` where they must see the result; every process calls orbax's save and
restore, and orbax coordinates them. The run directory must be one directory that every process
sees (a shared file system).

A peer that dies (killed, a lost host) stops the others: a collective with it fails at once on
the closed connection (gloo on CPU), and ``train.py`` names the lost process
(:func:`describe_lost_peer`) and exits with code 4; a process waiting elsewhere (at one of
orbax's barriers) learns it from JAX's coordination service, which declares the peer dead after
``heartbeat_timeout_seconds`` and terminates the others itself (SIGABRT), its message naming
the task that stopped sending heartbeats.

May import from nprnn: nothing.
"""

from __future__ import annotations

import re

import jax
from jax._src import distributed as jax_distributed  # the coordinator's address: not public API
from jax.experimental import multihost_utils

__all__ = ["barrier", "describe_lost_peer", "initialize", "is_primary"]

#: JAX's own default (seconds): how long a process may go without a heartbeat before the
#: coordination service declares it dead and stops the others.
HEARTBEAT_TIMEOUT_SECONDS = 100


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_SECONDS,
) -> None:
    """Starts JAX's distributed runtime; call once per process, before any JAX computation.

    The three arguments are :func:`jax.distributed.initialize`'s. Left None, JAX detects them
    from the cluster (SLURM, Open MPI, Cloud TPU; or ``JAX_COORDINATOR_ADDRESS``); on machines
    without a scheduler give all three, the same ``coordinator_address`` (process 0's host and a
    free port) and ``num_processes`` everywhere, ``process_id`` 0 to ``num_processes - 1``.

    Collectives between processes on CPUs go through gloo (JAX 0.10's default for
    ``jax_cpu_collectives_implementation``, set here where it is unset; a value set otherwise,
    ``mpi``, is kept); GPUs use NCCL as always.

    Args:
        coordinator_address: ``host:port`` of process 0, where it runs the coordination service.
        num_processes: how many processes take part.
        process_id: this process's index.
        heartbeat_timeout_seconds: a process silent for this long is declared dead and the
            others are stopped (the bound on how long a run outlives a lost host).

    Raises:
        ValueError: JAX's, when no cluster is detected and an argument is missing.
    """
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    )


def is_primary() -> bool:
    """Whether this process writes the run's files and reports progress: process 0 (also the
    only process of a single-process run)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier ``name``; nothing with one process."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


#: Words of the errors a lost peer causes: a collective's closed connection (gloo on CPU, NCCL on
#: GPU), or the coordination service's verdict when a barrier or key-value wait fails.
_PEER_ERRORS = re.compile(
    r"Connection (reset|closed) by peer|Broken pipe|Connection refused|Gloo|NCCL|"
    r"heartbeat timeout|stopped sending heartbeats|Barrier failed|coordination service",
    re.IGNORECASE,
)


def describe_lost_peer(err: BaseException) -> str | None:
    """A message naming the peer whose loss ``err`` reports, or None if ``err`` is not about a
    lost peer (or the run has one process).

    Told from the error's text: what a collective with a dead process raises (gloo, NCCL) or
    what the coordination service says. With two processes the lost one is the other; with more,
    the error's own first line (gloo names the peer's address) is the best there is: asking the
    coordination service which processes are alive waits until it has noticed, which takes up to
    ``heartbeat_timeout_seconds`` after the failed collective reported it.
    """
    n = jax.process_count()
    text = str(err).strip()
    if n == 1 or not _PEER_ERRORS.search(text):
        return None
    me = jax.process_index()
    coordinator = jax_distributed.global_state.coordinator_address
    if n == 2:
        other = 1 - me
        who = f"process {other}" + (f" (the coordinator, {coordinator})" if other == 0 else "")
    else:
        who = f"another process (coordinator {coordinator})"
    first = text.splitlines()[0] if text else ""
    return (
        f"lost {who} of this {n}-process run; this is process {me}, stopping. "
        f"({type(err).__name__}: {first})"
    )
