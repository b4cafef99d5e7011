"""Trains a normalized LSTM on one of the paper's tasks.

    python train.py --config=configs/ptb_char_small.py --workdir=runs/ptb_np \
        --config.model.variant=normprop [--data_dir=../shared/data]

Any config field can be overridden with --config.<group>.<field>=value. Running the same command
again resumes from the newest checkpoint in --workdir.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

import nprnn
from nprnn.data import DataError
from nprnn.tasks import TASKS
from nprnn.training import TrainingDiverged, train_and_evaluate

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
_TUNE_ALLOCATOR = flags.DEFINE_bool(
    "tune_allocator",
    True,
    "Keep freed host memory for reuse (glibc malloc; see nprnn.tune_host_allocator): avoids "
    "fresh page faults on XLA:CPU's buffers at every step.",
)
flags.mark_flags_as_required(["config", "workdir"])


def validate(config) -> None:
    """Stops with a clear message on a bad config value, before any work."""
    problems = []
    if config.task not in TASKS:
        problems.append(f"config.task={config.task!r} is not one of {TASKS}")
    if config.model.variant not in nprnn.VARIANTS:
        problems.append(
            f"config.model.variant={config.model.variant!r} is not one of {nprnn.VARIANTS}"
        )
    for name in ("gamma_x", "gamma_h", "gamma_c"):
        value = config.model[name]
        if value is not None and not value > 0:
            problems.append(f"config.model.{name}={value!r} must be positive")
    if config.model.variance_method not in nprnn.VARIANCE_METHODS:
        problems.append(
            f"config.model.variance_method={config.model.variance_method!r} is not one of "
            f"{nprnn.VARIANCE_METHODS}"
        )
    for group, name in (
        ("data", "batch_size"),
        ("data", "eval_batch_size"),
        ("data", "seq_len"),
        ("model", "hidden_size"),
        ("model", "num_layers"),
        ("train", "num_steps"),
        ("train", "log_every"),
        ("train", "eval_every"),
        ("train", "checkpoint_every"),
        ("train", "keep_checkpoints"),
    ):
        value = config[group][name]
        if not isinstance(value, int) or value < 1:
            problems.append(f"config.{group}.{name}={value!r} must be a positive integer")
    if not config.opt.learning_rate > 0:
        problems.append(f"config.opt.learning_rate={config.opt.learning_rate!r} must be positive")
    if config.opt.decay_every not in ("update", "epoch"):
        problems.append(f"config.opt.decay_every={config.opt.decay_every!r}: 'update' or 'epoch'")
    for name in ("input_dropout", "output_dropout", "recurrent_dropout"):
        if not 0.0 <= config.model[name] < 1.0:
            problems.append(f"config.model.{name}={config.model[name]!r} must be in [0, 1)")
    if config.opt.unit_norm_projection and config.model.variant not in ("weightnorm", "normprop"):
        problems.append(
            "config.opt.unit_norm_projection=True needs variant weightnorm or normprop, got "
            f"{config.model.variant!r}"
        )
    if problems:
        raise app.UsageError("bad config:\n  " + "\n  ".join(problems))


class _QuietOrbax:
    """Drops orbax's INFO chatter (a dozen lines per checkpoint) from the absl log."""

    def filter(self, record):
        return record.levelno >= 30 or "orbax" not in record.pathname


def main(argv):
    if _TUNE_ALLOCATOR.value:  # before the first JAX computation
        nprnn.tune_host_allocator()
    logging.get_absl_handler().addFilter(_QuietOrbax())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if _DATA_DIR.value:
        with config.unlocked():
            config.data.dir = _DATA_DIR.value
    validate(config)
    if _DISTRIBUTED.value:
        import jax

        jax.distributed.initialize()
    try:
        metrics = train_and_evaluate(config, _WORKDIR.value)
    except DataError as err:
        logging.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    print(f"done: valid {metrics}")


if __name__ == "__main__":
    app.run(main)
