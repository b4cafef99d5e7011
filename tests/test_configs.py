"""Tests of nprnn.configs: the one validation of a config, defaults for old runs, and train.py's
handling of a --config file that is missing or does not load (subprocesses that stop before any
JAX work)."""

from __future__ import annotations

import json

import ml_collections
import pytest
from fake_data import REPO, load_config, run_train_py

from nprnn import configs

CONFIG_NAMES = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem != "__init__")


def valid_config():
    c = configs.base_config()
    c.task = "ptb_char"
    return c


def problems_of(config) -> list[str]:
    """The lines of validate's ValueError after its "bad config:" header."""
    with pytest.raises(ValueError, match="^bad config:\n") as info:
        configs.validate(config)
    return str(info.value).splitlines()[1:]


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_config_file_validates(name):
    configs.validate(load_config(name))


def test_the_config_files_are_found():
    assert {"ptb_char", "ptb_char_small", "draw_mnist", "mnist_pixels", "text8"} <= set(
        CONFIG_NAMES
    )


# (field, bad value, the message line naming it)
BAD_FIELDS = [
    ("task", "ptb", "unknown config.task 'ptb'; expected one of ('ptb_char', "),
    ("model.variant", "gru", "unknown config.model.variant 'gru'; expected one of ('lstm', "),
    ("model.variance_method", "exact", "unknown config.model.variance_method 'exact'"),
    ("model.gamma_init", "edge", "unknown config.model.gamma_init 'edge'"),
    ("opt.decay_every", "batch", "unknown config.opt.decay_every 'batch'"),
    ("opt.schedule", "cosine", "unknown config.opt.schedule 'cosine'"),
    ("model.compensation", "eq15", "unknown config.model.compensation 'eq15'"),
    ("model.gamma_variants", "ln,gru", "unknown variant in config.model.gamma_variants 'ln'"),
    ("data.eval_streams", 0, "config.data.eval_streams must be a positive integer, got 0"),
    ("data.batch_size", 0, "config.data.batch_size must be a positive integer, got 0"),
    ("data.eval_batch_size", -2, "config.data.eval_batch_size must be a positive integer, got -2"),
    ("data.seq_len", 0, "config.data.seq_len must be a positive integer, got 0"),
    ("model.hidden_size", 0, "config.model.hidden_size must be a positive integer, got 0"),
    ("model.num_layers", 0, "config.model.num_layers must be a positive integer, got 0"),
    ("model.latent_size", 0, "config.model.latent_size must be a positive integer, got 0"),
    ("model.glimpses", 0, "config.model.glimpses must be a positive integer, got 0"),
    ("train.num_steps", 0, "config.train.num_steps must be a positive integer, got 0"),
    ("train.log_every", 0, "config.train.log_every must be a positive integer, got 0"),
    ("train.eval_every", 0, "config.train.eval_every must be a positive integer, got 0"),
    (
        "train.checkpoint_every",
        0,
        "config.train.checkpoint_every must be a positive integer, got 0",
    ),
    (
        "train.keep_checkpoints",
        0,
        "config.train.keep_checkpoints must be a positive integer, got 0",
    ),
    ("model.input_dropout", 1.0, "config.model.input_dropout must be in [0, 1), got 1.0"),
    ("model.output_dropout", -0.1, "config.model.output_dropout must be in [0, 1), got -0.1"),
    ("model.recurrent_dropout", 1.5, "config.model.recurrent_dropout must be in [0, 1), got 1.5"),
    ("model.bn_momentum", 1.0, "config.model.bn_momentum must be in [0, 1), got 1.0"),
    ("opt.decay", 1.0, "config.opt.decay must be in [0, 1), got 1.0"),
    (
        "opt.learning_rate",
        0.0,
        "config.opt.learning_rate must be a positive finite number, got 0.0",
    ),
    ("model.gamma_x", -1.0, "config.model.gamma_x must be a positive finite number, got -1.0"),
    ("model.gamma_h", 0.0, "config.model.gamma_h must be a positive finite number, got 0.0"),
    (
        "model.gamma_c",
        float("inf"),
        "config.model.gamma_c must be a positive finite number, got inf",
    ),
    ("model.matmul_dtype", "int8", "config.model.matmul_dtype must be a floating dtype, got int8"),
]


@pytest.mark.parametrize("path, value, message", BAD_FIELDS, ids=[f[0] for f in BAD_FIELDS])
def test_each_bad_field_is_named(path, value, message):
    config = valid_config()
    group, _, name = path.rpartition(".")
    (config[group] if group else config)[name] = value
    problems = problems_of(config)
    assert len(problems) == 1, problems
    assert problems[0].strip().startswith(message)


def test_every_problem_is_listed_at_once():
    config = valid_config()
    config.model.variant = "bogus"
    config.data.batch_size = 0
    config.opt.decay = 2.0
    problems = [p.strip() for p in problems_of(config)]
    assert len(problems) == 3
    assert problems[0].startswith("unknown config.model.variant 'bogus'")
    assert "config.data.batch_size must be a positive integer, got 0" in problems
    assert "config.opt.decay must be in [0, 1), got 2.0" in problems


def test_optional_fields_accept_their_defaults():
    config = valid_config()
    assert config.model.gamma_x is None and config.model.matmul_dtype == ""
    config.model.matmul_dtype = "bfloat16"
    config.model.gamma_h = 0.5
    configs.validate(config)


@pytest.mark.parametrize("variant", ["lstm", "layernorm", "batchnorm"])
def test_unit_norm_projection_needs_a_weight_normalized_variant(variant):
    config = valid_config()
    config.model.variant = variant
    configs.validate(config)  # None: off for these variants
    config.opt.unit_norm_projection = True
    assert [p.strip() for p in problems_of(config)] == [
        "config.opt.unit_norm_projection=True needs variant weightnorm or normprop, got "
        f"{variant!r}"
    ]
    config.model.variant = "weightnorm"
    configs.validate(config)


def test_a_missing_field_is_named():
    stored = valid_config().to_dict()
    del stored["model"]["gamma_init"]
    del stored["train"]["num_steps"]
    problems = [p.strip() for p in problems_of(ml_collections.ConfigDict(stored))]
    assert problems == ["config.model.gamma_init is missing", "config.train.num_steps is missing"]


def test_with_defaults_fills_the_fields_an_old_run_lacks():
    stored = json.loads(valid_config().to_json())
    for group, name in [
        ("model", "gamma_init"),
        ("model", "matmul_dtype"),
        ("data", "verify"),
        ("train", "data_parallel"),
    ]:
        del stored[group][name]
    stored["model"]["hidden_size"] = 7
    stored["model"]["gamma_x"] = 0.5
    config = configs.with_defaults(stored)
    base = configs.base_config()
    assert config.model.gamma_init == base.model.gamma_init == "default"
    assert config.model.matmul_dtype == base.model.matmul_dtype
    assert config.data.verify is True and config.train.data_parallel is True
    assert config.model.hidden_size == 7 and config.model.gamma_x == 0.5
    assert config.model.gamma_h is None
    configs.validate(config)
    # A full config comes back unchanged, whether a dict or a ConfigDict.
    full = valid_config()
    full.model.gamma_c = 0.25
    assert configs.with_defaults(full).to_dict() == full.to_dict()
    assert configs.with_defaults(json.loads(full.to_json())).to_dict() == full.to_dict()


# ---------------------------------------------------------------------------------------------
# train.py with a config file that is missing or does not load.

CONFIG_FILES = {
    "missing": (None, "does not exist"),
    "syntax_error": ("def get_config(:\n", "does not load: SyntaxError"),
    "no_get_config": ("VALUE = 1\n", "has no get_config()"),
    "import_error": ("import nprnn_no_such_module\n", "does not load: ModuleNotFoundError"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
def test_train_py_bad_config_file_is_one_line(case, tmp_path):
    text, expected = CONFIG_FILES[case]
    path = tmp_path / f"{case}.py"
    if text is not None:
        path.write_text(text)
    workdir = tmp_path / "run"
    out = run_train_py(f"--config={path}", f"--workdir={workdir}", timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: config file {str(path)!r} {expected}")
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not workdir.exists()


def test_train_py_missing_config_file_with_overrides(tmp_path):
    path = tmp_path / "nope.py"
    flags = (f"--config={path}", f"--workdir={tmp_path / 'run'}", "--config.model.variant=lstm")
    out = run_train_py(*flags, timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip() == f"error: config file {str(path)!r} does not exist"
