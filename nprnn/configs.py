"""Training configs: every field with its unit and default, and the one check of a config;
imports nprnn (its public names) and nprnn._validate.

May import from nprnn: the package's public names (``nprnn.VARIANTS``, ``nprnn.VARIANCE_METHODS``)
and ``nprnn._validate``; nothing that builds models or loads data, so that ``configs/*.py`` and
the checks stay cheap to import.

* :func:`base_config`: the only place where defaults live; ``configs/*.py`` fill it in.
* :func:`validate`: every problem of a config in one ``ValueError`` (``train.py``,
  :func:`nprnn.training.train_and_evaluate`, :func:`nprnn.training.load_run` and
  :func:`nprnn.tasks.build_task` call it).
* :func:`with_defaults`: a stored config (an older run's ``config.json``) over
  :func:`base_config`, so that fields added since then take their defaults.
* :func:`resume_differences`: the fields in which a config differs from the one a run
  directory was trained with, other than :data:`RESUMABLE_FIELDS` (a resumed run must be the
  same run).
* :func:`flags_parser`: absl's flag parsing for a main with a ``--config`` file, ending the
  program with one line when that file is missing or does not load.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping

import ml_collections
from absl import app
from ml_collections import config_dict

import nprnn
from nprnn import _validate

__all__ = [
    "RESUMABLE_FIELDS",
    "TASKS",
    "base_config",
    "flags_parser",
    "resume_differences",
    "unit_norm_projection",
    "validate",
    "with_defaults",
]

TASKS = ("ptb_char", "text8", "draw", "seqmnist")
"""The training tasks (``config.task``), built by :func:`nprnn.tasks.build_task`."""


def base_config() -> ml_collections.ConfigDict:
    """A config with every field the training loop reads; ``configs/*.py`` fill it in."""
    c = ml_collections.ConfigDict()
    c.task = ""  # one of TASKS
    c.seed = 0  # everything random (init, batches, dropout) derives from it

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # "" = --data_dir, else $NPRNN_DATA_DIR, else ~/.cache/nprnn
    c.data.download = True  # download missing files from the canonical source (needs a network)
    c.data.verify = True  # check the SHA-256 of the data files (False for your own small files)
    c.data.batch_size = 64  # sequences (or images) per training batch
    c.data.eval_batch_size = 64  # sequences (or images) per evaluation batch
    c.data.seq_len = 100  # characters per training / evaluation window
    # char LMs, "stream" protocol (Table 2): parallel streams the split is cut into. 1: every
    # character is predicted from the whole text before it, the paper's full-sequence protocol;
    # more streams evaluate faster and add (streams - 1) state resets.
    c.data.eval_streams = 1
    c.data.permute = False  # seqmnist: fixed random pixel permutation
    c.data.permutation_seed = 0  # seqmnist: seed of that permutation

    c.model = ml_collections.ConfigDict()
    c.model.variant = "normprop"  # one of nprnn.VARIANTS
    c.model.hidden_size = 1000  # units per LSTM layer
    c.model.num_layers = 1
    c.model.gamma_x = config_dict.placeholder(float)  # None: the variant's default
    c.model.gamma_h = config_dict.placeholder(float)
    c.model.gamma_c = config_dict.placeholder(float)
    # The variants the three gammas above apply to, comma-separated; "" = every variant. The
    # others start at their own defaults (nprnn.DEFAULT_GAMMAS: layernorm 1, batchnorm 0.1).
    c.model.gamma_variants = ""
    c.model.variance_method = "analytic"  # normprop: "analytic" (paper) or "simulated"
    # normprop's form: "paper" (eq. 15 as printed: divide by sqrt(Var[c]), sqrt(Var[h])) or
    # "released" (the authors' code, Thrandis/draw: divide the candidate and the output by
    # s(gamma) = std(tanh(gamma z)) of the initial gamma_h, gamma_c); see nprnn.init_params.
    c.model.compensation = "paper"
    # normprop: "default" (the gammas above / the paper's) or "critical": gamma_h chosen at the
    # edge of stability for the given gamma_x, gamma_c (nprnn.gradient_flow.critical_gammas).
    c.model.gamma_init = "default"
    c.model.forget_bias = 0.0  # initial forget-gate bias
    # Train the initial states h_0, c_0 (zeros at init) as the released code does (char LM and
    # DRAW); False: every sequence starts from zeros.
    c.model.learn_initial_state = False
    c.model.bn_momentum = 0.99  # batchnorm population statistics: EMA weight of the old value
    c.model.input_dropout = 0.0  # char LM: dropout rate on the inputs
    c.model.output_dropout = 0.0  # char LM: dropout rate before the softmax
    c.model.recurrent_dropout = 0.0  # dropout rate on the cell candidate (Semeniuta et al.)
    c.model.input_norm = False  # char LM: "batch data normalization" of the inputs (Table 2)
    c.model.matmul_dtype = ""  # char LM: "bfloat16" for mixed-precision matmuls; "" = float32
    c.model.latent_size = 100  # DRAW: size of z
    c.model.glimpses = 64  # DRAW: T
    c.model.read_n = 2  # DRAW: read attention grid N x N
    c.model.write_n = 5  # DRAW: write attention grid N x N
    # DRAW: weight-normalized linear layers (a gamma per output unit, unit-norm columns projected
    # after every update), as in the authors' released code (Thrandis/draw); False: plain layers.
    c.model.weight_norm_linear = False

    c.opt = ml_collections.ConfigDict()
    c.opt.learning_rate = 2e-3  # Adam step size at update 0
    # "exponential": lr * (1 - decay)^(k / period); "inverse_time": lr / (1 + decay * k / period),
    # the released DRAW code's schedule (Thrandis/draw, train-draw.py). k counts updates.
    c.opt.schedule = "exponential"
    c.opt.decay = 1e-3  # the decay rate of the schedule, per period (continuous)
    c.opt.decay_every = "update"  # the period: "update" or "epoch"; the paper does not say which
    c.opt.clip_norm = 1.0  # global-norm gradient clipping (0 = off)
    c.opt.b1 = 0.9
    c.opt.b2 = 0.999
    c.opt.eps = 1e-8
    # Project w_x, w_h to unit-norm columns after every update (the paper's section 3.3); None:
    # on for weightnorm and normprop, off otherwise. Only those two variants allow it.
    c.opt.unit_norm_projection = config_dict.placeholder(bool)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000  # updates
    c.train.log_every = 50  # updates between train-metric lines
    c.train.eval_every = 500  # updates between validation evaluations
    c.train.eval_batches = 0  # 0 = the whole validation split, else at most this many batches
    c.train.checkpoint_every = 500  # updates between checkpoints
    c.train.keep_checkpoints = 3
    c.train.data_parallel = True  # shard each batch over all devices (params replicated)
    # Independent replicas trained together in one jitted step (jax.vmap over a leading replica
    # axis); replica r has seed config.seed + r for its init, data order and dropout, so it is
    # the run of that seed. Metrics hold one value per replica. 1: a plain run.
    c.train.num_seeds = 1
    # How num_seeds > 1 runs: "vmap" (the replicas in one jitted step, as above; what a GPU
    # wants) or "processes" (each seed an ordinary run in <workdir>/seed<s>, in its own
    # single-threaded process pinned to a core, one per core at a time: the fastest way on a
    # CPU of few cores; nprnn.replicas).
    c.train.replicas = "vmap"
    return c


RESUMABLE_FIELDS = (
    "train.num_steps",  # extend (or shorten) a run: the schedule depends on the step alone
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.data_parallel",  # how the same batch is placed on the devices
    "train.replicas",  # how the seeds are run, not what they train
    "data.dir",  # where the same files are
    "data.download",
    "data.verify",
)
"""The fields a run may change when it is resumed: how long it trains, how often it logs,
evaluates and saves, and where its data lives. Any other difference changes the model, the data or
the optimizer, so :func:`nprnn.training.train_and_evaluate` refuses it (:func:`resume_differences`).
"""


def _flat(config: Mapping, prefix: str = "") -> dict:
    """``{"group.field": value}`` of a nested mapping."""
    out = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_differences(stored: Mapping, config: ml_collections.ConfigDict) -> list[str]:
    """The fields in which ``config`` differs from a run's stored config, other than
    :data:`RESUMABLE_FIELDS`, one ``"model.hidden_size: 32 in the run, 48 now"`` per field.

    ``stored`` (a run's ``config.json``) is read over :func:`base_config` first
    (:func:`with_defaults`), so that a field added since the run was written counts as its
    default; both sides go through JSON, so that a tuple and a list of the same values agree.
    """

    def normal(c) -> dict:
        return _flat(json.loads(with_defaults(c).to_json_best_effort()))

    old, new = normal(stored), normal(config)
    return [
        f"{field}: {old.get(field)!r} in the run, {new.get(field)!r} now"
        for field in sorted(old.keys() | new.keys())
        if field not in RESUMABLE_FIELDS and old.get(field) != new.get(field)
    ]


def unit_norm_projection(c: ml_collections.ConfigDict) -> bool:
    """Whether the run projects its weights to unit norm (``None`` resolved by the variant)."""
    if c.opt.unit_norm_projection is None:
        return c.model.variant in ("weightnorm", "normprop")
    return bool(c.opt.unit_norm_projection)


def with_defaults(stored: Mapping | ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """:func:`base_config` with the values of ``stored`` over it (nested groups merged).

    A run directory's ``config.json`` holds the fields of its time; fields added since then take
    their defaults here, so that old runs still load.
    """
    if isinstance(stored, ml_collections.ConfigDict):
        stored = stored.to_dict()  # values, not the placeholders' field references
    config = base_config()
    config.update(stored)
    return config


# The fields checked by each validator of nprnn._validate (paths below ``config``).
_CHOICES = {
    "task": TASKS,
    "model.variant": nprnn.VARIANTS,
    "model.variance_method": nprnn.VARIANCE_METHODS,
    "model.compensation": tuple(nprnn.COMPENSATIONS),
    "model.gamma_init": ("default", "critical"),
    "opt.decay_every": ("update", "epoch"),
    "opt.schedule": ("exponential", "inverse_time"),
    "train.replicas": ("vmap", "processes"),
}
_POSITIVE_INTS = (
    "data.batch_size",
    "data.eval_batch_size",
    "data.seq_len",
    "data.eval_streams",
    "model.hidden_size",
    "model.num_layers",
    "model.latent_size",
    "model.glimpses",
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.num_seeds",
)
_PROBABILITIES = (
    "model.input_dropout",
    "model.output_dropout",
    "model.recurrent_dropout",
    "model.bn_momentum",
    "opt.decay",
)
_GAMMAS = ("model.gamma_x", "model.gamma_h", "model.gamma_c")


def _optional_gamma(name: str, value):
    """None (the variant's default) or a positive finite number."""
    return value if value is None else _validate.positive_gamma(name, value)


def _optional_dtype(name: str, value):
    """The empty string (full precision) or the name of a floating dtype."""
    return value if not value else _validate.floating_dtype(name, value)


def _variant_list(name: str, value: str) -> tuple[str, ...]:
    """A comma-separated list of variants ("" for none)."""
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for variant in names:
        _validate.one_of(f"variant in {name}", variant, nprnn.VARIANTS)
    return names


def gammas_apply(model: ml_collections.ConfigDict) -> bool:
    """Whether ``model.gamma_x/h/c`` apply to ``model.variant`` (see ``model.gamma_variants``)."""
    names = _variant_list("config.model.gamma_variants", model.gamma_variants)
    return not names or model.variant in names


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every field that has a rule; raises one ``ValueError`` listing all problems.

    Each problem is one line naming the field and its value (``config.data.batch_size must be a
    positive integer, got 0``), in the message style of ``nprnn._validate``.

    Raises:
        ValueError: ``"bad config:"`` followed by one indented line per problem.
    """
    problems = []

    def check(rule, path: str, *args) -> None:
        value = config
        try:
            for part in path.split("."):
                value = value[part]
            rule(f"config.{path}", value, *args)
        except KeyError:
            problems.append(f"config.{path} is missing")
        except ValueError as err:
            problems.append(str(err))

    for path, choices in _CHOICES.items():
        check(_validate.one_of, path, choices)
    for path in _POSITIVE_INTS:
        check(_validate.positive_int, path)
    for path in _PROBABILITIES:
        check(_validate.probability, path)
    for path in _GAMMAS:
        check(_optional_gamma, path)
    check(_validate.positive_gamma, "opt.learning_rate")
    check(_optional_dtype, "model.matmul_dtype")
    check(_variant_list, "model.gamma_variants")
    variant = config.model.variant
    if config.opt.unit_norm_projection and variant not in ("weightnorm", "normprop"):
        problems.append(
            "config.opt.unit_norm_projection=True needs variant weightnorm or normprop, got "
            f"{variant!r}"
        )
    if problems:
        raise ValueError("bad config:\n  " + "\n  ".join(problems))


def flags_parser(config_flag) -> Callable[[list[str]], list[str]]:
    """A ``flags_parser`` for ``absl.app.run`` in a main with a config-file flag.

    It parses the flags as absl does (a bad flag prints absl's usage message), except that a
    config file (``config_flag``, from ``ml_collections.config_flags.DEFINE_config_file``) that
    does not exist, does not load (a syntax error, an exception at import) or has no
    ``get_config()`` returning a ConfigDict ends the program with one line naming the file
    (exit status 1), instead of ml_collections' traceback.

    Example:
        >>> app.run(main, flags_parser=flags_parser(_CONFIG))  # doctest: +SKIP
    """

    def parse(argv: list[str]) -> list[str]:
        try:
            parsed = app.parse_flags_with_usage(argv)
            config = config_flag.value
            if not isinstance(config, ml_collections.ConfigDict):
                raise TypeError(f"get_config() returned {type(config).__name__}, not a ConfigDict")
            return parsed
        except Exception as err:  # noqa: BLE001 - only the config file runs code while parsing
            sys.exit(f"error: {_load_error(config_flag.name, argv, err)}")

    return parse


def _flag_value(argv: list[str], name: str) -> str:
    """The value given to ``--name`` (or ``-name``) on the command line, "" if none."""
    for i, arg in enumerate(argv):
        found = re.match(rf"--?{name}(=|$)", arg)
        if found:
            return arg[found.end() :] if found[1] else (argv[i + 1] if i + 1 < len(argv) else "")
    return ""


def _load_error(name: str, argv: list[str], err: Exception) -> str:
    """One line saying why the config file of ``--name`` (``path[:get_config argument]``) failed."""
    value = _flag_value(argv, name)
    path = value.split(":", 1)[0]
    if not os.path.isfile(path):
        return f"config file {path!r} does not exist"
    if isinstance(err, AttributeError) and "get_config" in str(err):
        return f"config file {path!r} has no get_config()"
    reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
    frames = traceback.extract_tb(err.__traceback__)
    if isinstance(err, SyntaxError) or any(_same_file(f.filename, path) for f in frames):
        return f"config file {path!r} does not load: {reason}"
    return f"--{name}={value}: {reason}"  # e.g. an override of a field the config lacks


def _same_file(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)
