"""Trains a normalized LSTM on one of the paper's tasks: the absl main of nprnn.training.

    python train.py --config=configs/ptb_char_small.py --workdir=runs/ptb_np \
        --config.model.variant=normprop [--data_dir=../shared/data]

Any config field can be overridden with --config.<group>.<field>=value. Running the same command
again resumes from the newest checkpoint in --workdir; a config that changes the run (anything but
nprnn.configs.RESUMABLE_FIELDS, such as train.num_steps) stops with the differing fields named,
unless --restart moves the old run to <workdir>/archived/<time>/ first.

Several processes (one per host) train one run with --distributed: under SLURM, Open MPI or on
Cloud TPU JAX finds the processes itself; elsewhere give each process --coordinator_address (process
0's host:port), --num_processes and its --process_id (README, "Several hosts"). A process whose
peer dies exits with code 4, naming the peer.

May import from nprnn: the package (tune_host_allocator), checkpoints (CheckpointMismatch),
configs, data (DataError), distributed, replicas, training.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

import nprnn
from nprnn import configs, distributed, replicas
from nprnn.checkpoints import CheckpointMismatch
from nprnn.data import DataError
from nprnn.training import QuietOrbax, RunMismatch, TrainingDiverged, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Data directory (overrides config.data.dir and $NPRNN_DATA_DIR)."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Several processes (hosts) train one run: start JAX's distributed runtime first "
    "(nprnn.distributed.initialize). The three flags below default to what JAX detects "
    "(SLURM, Open MPI, Cloud TPU, JAX_COORDINATOR_ADDRESS).",
)
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address",
    None,
    "With --distributed: host:port of process 0, the same for every process.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed: how many processes train the run.", lower_bound=1
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id",
    None,
    "With --distributed: this process's index, 0 to num_processes - 1.",
    lower_bound=0,
)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds",
    distributed.HEARTBEAT_TIMEOUT_SECONDS,
    "With --distributed: a process silent this long is declared dead and the others stop (a "
    "killed process is noticed at once, through its closed connections).",
    lower_bound=1,
)
_RESTART = flags.DEFINE_bool(
    "restart",
    False,
    "Start over in a --workdir that holds a run: move that run (config, metrics, checkpoints) "
    "to <workdir>/archived/<time>/ first; nothing is deleted. Without it, a --workdir with a run "
    "resumes it, and refuses a config that changes it.",
)
_TUNE_ALLOCATOR = flags.DEFINE_bool(
    "tune_allocator",
    True,
    "Keep freed host memory for reuse (glibc malloc; see nprnn.tune_host_allocator): avoids "
    "fresh page faults on XLA:CPU's buffers at every step.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if _TUNE_ALLOCATOR.value:  # before the first JAX computation
        nprnn.tune_host_allocator()
    logging.get_absl_handler().addFilter(QuietOrbax())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if _DATA_DIR.value:
        with config.unlocked():
            config.data.dir = _DATA_DIR.value
    try:
        configs.validate(config)  # every problem at once, before any work
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    explicit = [f.name for f in (_COORDINATOR_ADDRESS, _NUM_PROCESSES, _PROCESS_ID) if f.present]
    if explicit and not _DISTRIBUTED.value:
        raise app.UsageError(f"--{', --'.join(explicit)}: only with --distributed")
    if _DISTRIBUTED.value and (config.train.num_seeds > 1 or not config.train.data_parallel):
        raise app.UsageError(
            "--distributed trains one model data parallel over every process's devices: it "
            "needs train.num_seeds = 1 and train.data_parallel = True (run the seeds one after "
            "the other, or one run per host without --distributed)"
        )
    if _DISTRIBUTED.value:
        try:
            distributed.initialize(
                _COORDINATOR_ADDRESS.value,
                _NUM_PROCESSES.value,
                _PROCESS_ID.value,
                heartbeat_timeout_seconds=_HEARTBEAT_TIMEOUT.value,
            )
        except ValueError as err:  # no cluster detected and an argument missing
            raise app.UsageError(
                f"--distributed: {err} No cluster (SLURM, Open MPI, TPU) was detected: give "
                "--coordinator_address, --num_processes and --process_id."
            ) from None
    processes = config.train.num_seeds > 1 and config.train.replicas == "processes"
    try:
        if processes:
            metrics = replicas.train_in_processes(config, _WORKDIR.value, restart=_RESTART.value)
        else:
            metrics = train_and_evaluate(config, _WORKDIR.value, restart=_RESTART.value)
    except (DataError, RunMismatch, CheckpointMismatch) as err:
        logging.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (TrainingDiverged, replicas.ReplicaFailed) as err:
        logging.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    except Exception as err:
        lost = _DISTRIBUTED.value and distributed.describe_lost_peer(err)
        if not lost:
            raise
        logging.error("%s", lost)
        print(
            f"error: {lost} The checkpoints in {_WORKDIR.value} are kept: start every "
            "process again to resume.",
            file=sys.stderr,
            flush=True,
        )
        logging.flush()
        # Not sys.exit: JAX's exit handler would wait for the lost peer at a shutdown barrier
        # until the heartbeat timeout, then abort.
        os._exit(4)
    if distributed.is_primary():
        print(f"done: valid {metrics}")


if __name__ == "__main__":
    app.run(main, flags_parser=configs.flags_parser(_CONFIG))
