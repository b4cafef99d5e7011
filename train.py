"""Trains a normalized LSTM on one of the paper's tasks: the absl main of nprnn.training.

    python train.py --config=configs/ptb_char_small.py --workdir=runs/ptb_np \
        --config.model.variant=normprop [--data_dir=../shared/data]

Any config field can be overridden with --config.<group>.<field>=value. Running the same command
again resumes from the newest checkpoint in --workdir; a config that changes the run (anything but
nprnn.configs.RESUMABLE_FIELDS, such as train.num_steps) stops with the differing fields named,
unless --restart moves the old run to <workdir>/archived/<time>/ first.

May import from nprnn: the package (tune_host_allocator), checkpoints (CheckpointMismatch),
configs, data (DataError), replicas, training.
"""

from __future__ import annotations

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import nprnn
from nprnn import configs, replicas
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
    "Multi-host: call jax.distributed.initialize() (coordinator and process ids from the "
    "environment, e.g. SLURM or JAX_COORDINATOR_ADDRESS) before training.",
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
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
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
    print(f"done: valid {metrics}")


if __name__ == "__main__":
    app.run(main, flags_parser=configs.flags_parser(_CONFIG))
