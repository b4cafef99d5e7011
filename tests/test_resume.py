"""Resuming a run directory safely (nprnn.training, nprnn.checkpoints, train.py --restart).

A run directory holds one run: a rerun with a config that changes it stops before any file is
touched; the fields of nprnn.configs.RESUMABLE_FIELDS may change; an unreadable checkpoint is
moved aside and the metrics logged after the checkpoint resumed from are kept beside it, never
deleted. Tiny runs on fake PTB files (tests/fake_data.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from fake_data import TINY_FLAGS, run_train_py, tiny_ptb_config, write_fake_ptb

from nprnn import checkpoints, configs, runs, training


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fake_ptb(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    """A finished 12-update lstm run (checkpoints at 4, 8, 12): (config, workdir)."""
    config = tiny_ptb_config(data_dir, variant="lstm")
    workdir = tmp_path_factory.mktemp("finished")
    training.train_and_evaluate(config, workdir)
    return config, workdir


def snapshot(root) -> dict:
    """Every file under root with its content hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def copy_run(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished[1], workdir)
    return workdir


def metric_lines(workdir) -> list[str]:
    return (workdir / "metrics.jsonl").read_text().splitlines()


def corrupt(workdir, step: int) -> None:
    for path in (workdir / "checkpoints" / str(step)).rglob("*"):
        if path.is_file():
            path.write_bytes(b"\xffgarbage\x00" * 7)


# ---------------------------------------------------------------------------------------------
# The config of a run directory.


def test_resume_differences_names_each_changed_field_but_not_the_resumable_ones(data_dir):
    config = tiny_ptb_config(data_dir, variant="lstm")
    stored = json.loads(config.to_json_best_effort())
    changed = tiny_ptb_config(data_dir, variant="lstm", num_steps=99, log_every=1)
    changed.model.hidden_size = 12
    changed.opt.learning_rate = 1e-3
    changed.data.dir = "/elsewhere"
    assert configs.resume_differences(stored, changed) == [
        "model.hidden_size: 8 in the run, 12 now",
        "opt.learning_rate: 0.002 in the run, 0.001 now",
    ]
    # A run written before a field existed compares that field as its default.
    del stored["model"]["learn_initial_state"]
    assert configs.resume_differences(stored, config) == []


def test_changed_model_field_stops_before_touching_a_file(finished, tmp_path):
    config, _ = finished
    workdir = copy_run(finished, tmp_path)
    before = snapshot(workdir)
    changed = config.copy_and_resolve_references()
    changed.model.hidden_size = 12
    with pytest.raises(training.RunMismatch) as info:
        training.train_and_evaluate(changed, workdir)
    message = str(info.value)
    assert "model.hidden_size: 8 in the run, 12 now" in message
    assert "--restart" in message and "new --workdir" in message
    assert snapshot(workdir) == before


def test_train_py_refuses_a_changed_run_then_restart_archives_it(finished, data_dir, tmp_path):
    workdir = copy_run(finished, tmp_path)
    before = snapshot(workdir)
    flags = (
        "--config=configs/ptb_char_small.py",
        f"--workdir={workdir}",
        f"--data_dir={data_dir}",
        *TINY_FLAGS,
        "--config.model.variant=lstm",
        "--config.model.hidden_size=12",
        "--config.train.num_steps=4",
    )
    out = run_train_py(*flags)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "model.hidden_size: 8 in the run, 12 now" in out.stderr
    assert "Traceback" not in out.stderr
    assert snapshot(workdir) == before  # metrics.jsonl byte for byte, checkpoints, config

    out = run_train_py(*flags, "--restart")
    assert out.returncode == 0, out.stderr[-3000:]
    [archive] = (workdir / runs.ARCHIVE).iterdir()
    assert snapshot(archive) == before  # the old run whole, nothing deleted
    assert json.loads((workdir / "config.json").read_text())["model"]["hidden_size"] == 12
    assert max(json.loads(line)["step"] for line in metric_lines(workdir)) == 4


def test_allowed_field_extends_the_run(finished, tmp_path):
    config, _ = finished
    workdir = copy_run(finished, tmp_path)
    lines = metric_lines(workdir)
    longer = config.copy_and_resolve_references()
    longer.train.num_steps = 16
    longer.train.log_every = 2
    training.train_and_evaluate(longer, workdir)
    after = metric_lines(workdir)
    assert after[: len(lines)] == lines  # resumed at 12: nothing logged before is rewritten
    assert [json.loads(line)["step"] for line in after[len(lines) :]] == [14, 16, 16]
    assert json.loads((workdir / "config.json").read_text())["train"]["num_steps"] == 16


# ---------------------------------------------------------------------------------------------
# Unreadable checkpoints.


def test_corrupt_newest_checkpoint_keeps_the_metrics_logged_after_the_older_one(finished, tmp_path):
    config, _ = finished
    workdir = copy_run(finished, tmp_path)
    lines = metric_lines(workdir)
    corrupt(workdir, 12)
    training.train_and_evaluate(config, workdir)  # resumes from step 8
    quarantine = workdir / "unreadable_checkpoints"
    assert sorted(p.name.split("-")[0] for p in quarantine.iterdir() if p.is_dir()) == ["12"]
    [dropped] = quarantine.glob("metrics-after-8-*.jsonl")
    assert dropped.read_text().splitlines() == [
        line for line in lines if json.loads(line)["step"] > 8
    ]
    # The rerun logs the same rows again (timings aside).
    again = [json.loads(line) for line in metric_lines(workdir)]
    assert [(r["step"], r["split"]) for r in again] == [
        (r["step"], r["split"]) for r in map(json.loads, lines)
    ]


def test_all_checkpoints_corrupt_start_over_and_keep_every_metric(finished, tmp_path):
    config, reference = finished
    workdir = copy_run(finished, tmp_path)
    lines = metric_lines(workdir)
    for step in (4, 8, 12):
        corrupt(workdir, step)
    training.train_and_evaluate(config, workdir)
    quarantine = workdir / "unreadable_checkpoints"
    moved = sorted(int(p.name.split("-")[0]) for p in quarantine.iterdir() if p.is_dir())
    assert moved == [4, 8, 12]
    [dropped] = quarantine.glob("metrics-after-0-*.jsonl")
    assert dropped.read_text().splitlines() == lines
    _, _, retrained, step = training.load_run(workdir)
    _, _, original, _ = training.load_run(reference)
    assert step == 12  # trained again from step 0: the run of the same seed
    jax.tree.map(np.testing.assert_array_equal, retrained["params"], original["params"])


def test_a_checkpoint_that_does_not_fit_the_model_is_refused_and_kept(tmp_path):
    state = {"w": jnp.ones((3, 4), jnp.float32), "step": jnp.asarray(5, jnp.int32)}
    mgr = checkpoints.manager(tmp_path / "ckpt")
    mgr.save(5, args=ocp.args.StandardSave(state))
    mgr.wait_until_finished()
    before = snapshot(tmp_path)
    target = {
        "w": jnp.zeros((3, 6), jnp.float32),
        "b": jnp.zeros(2, jnp.float32),
        "step": jnp.asarray(0, jnp.int32),
    }
    with pytest.raises(checkpoints.CheckpointMismatch) as info:
        checkpoints.restore_latest(mgr, target, quarantine=tmp_path / "quarantine")
    message = str(info.value)
    assert "step 5" in message
    assert "w: (3, 4) float32 stored, (3, 6) float32 expected" in message
    assert "b: not in the checkpoint" in message
    assert snapshot(tmp_path) == before and not (tmp_path / "quarantine").exists()
    restored, step, unreadable = checkpoints.restore_latest(mgr, state)
    assert step == 5 and unreadable == [] and int(restored["step"]) == 5


def test_a_file_system_error_is_raised_and_moves_nothing(tmp_path, monkeypatch):
    state = {"w": jnp.ones((3, 4), jnp.float32)}
    mgr = checkpoints.manager(tmp_path / "ckpt")
    mgr.save(1, args=ocp.args.StandardSave(state))
    mgr.wait_until_finished()

    def fail(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(mgr, "restore", fail)
    with pytest.raises(OSError, match="Input/output error"):
        checkpoints.restore_latest(mgr, state, quarantine=tmp_path / "quarantine")
    assert mgr.all_steps() == [1] and not (tmp_path / "quarantine").exists()
