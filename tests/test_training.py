"""Tests of the training loop (nprnn.training) and of train.py on tiny configs and fake PTB files.

Every run here is configs/ptb_char_small.py shrunk to 8 units, batch 4 and length-10 windows
(tests/fake_data.py). No test touches the network.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_data import REPO, TINY_FLAGS, run_train_py, tiny_ptb_config, write_fake_ptb

import nprnn
from nprnn import configs as base
from nprnn import evaluation, projection, reports, runs, training
from nprnn.data import load_ptb_chars, text
from nprnn.replicas import ReplicaFailed, train_in_processes
from nprnn.tasks import build_task

TIMING_KEYS = {"steps_per_s", "s_per_epoch"}
TRAIN_KEYS = {"step", "split", "loss", "bpc", "grad_norm", "learning_rate"} | TIMING_KEYS
VALID_KEYS = {"step", "split", "loss", "bpc", "count"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fake_ptb(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory):
    """A finished 12-update normprop run: (config, workdir, returned metrics)."""
    config = tiny_ptb_config(data_dir)
    workdir = tmp_path_factory.mktemp("run")
    metrics = training.train_and_evaluate(config, workdir)
    return config, workdir, metrics


def read_metrics(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def checkpoint_steps(workdir) -> list[int]:
    """Steps of the finalized checkpoints (orbax renames a finished temporary directory)."""
    root = workdir / "checkpoints"
    if not root.exists():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def assert_trees_equal(a, b):
    """Same structure and bitwise-equal leaves (PRNG keys compared through their data)."""
    paths_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for (path, x), y in zip(paths_a, leaves_b, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


def corrupt_checkpoint(workdir, step: int, how: str) -> None:
    files = [p for p in (workdir / "checkpoints" / str(step)).rglob("*") if p.is_file()]
    assert files
    for path in files:
        path.write_bytes(b"" if how == "truncate" else b"\xffgarbage\x00" * 7)


# ---------------------------------------------------------------------------------------------
# A whole run in process.


def test_train_then_evaluate_round_trip(run):
    config, workdir, returned = run
    assert json.loads((workdir / "config.json").read_text()) == json.loads(config.to_json())
    assert checkpoint_steps(workdir) == [4, 8, 12]  # every 4 updates, keep_checkpoints=3

    records = read_metrics(workdir)
    train = [r for r in records if r["split"] == "train"]
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in train] == [4, 8, 12]
    assert [r["step"] for r in valid] == [6, 12]
    for r in train:
        assert set(r) == TRAIN_KEYS
        assert r["bpc"] == pytest.approx(r["loss"] / np.log(2.0))
        # The rate of update number `step` (0-based count step - 1).
        # configs/ptb_char.py: inverse-time decay 1e-3 per update
        assert r["learning_rate"] == pytest.approx(2e-3 / (1 + 1e-3 * (r["step"] - 1)))
        assert all(np.isfinite(r[k]) for k in TRAIN_KEYS - {"split"})
    for r in valid:
        assert set(r) == VALID_KEYS
        assert r["count"] == 2 * 4 * 10  # eval_batches windows of eval_batch_size x seq_len
    assert returned == {k: v for k, v in valid[-1].items() if k not in ("step", "split")}

    loaded_config, task, state, step = training.load_run(workdir)
    assert step == 12 and int(state["step"]) == 12
    assert loaded_config.to_dict() == config.to_dict()
    again = task.evaluate(
        state["params"], state["consts"], state["model_state"], "valid", max_batches=2
    )
    assert again["count"] == returned["count"]
    assert again["bpc"] == pytest.approx(returned["bpc"], rel=1e-6)
    assert not nprnn.tasks.tree_has_nonfinite(state["params"])
    full = task.evaluate(state["params"], state["consts"], state["model_state"], "test")
    test_split = load_ptb_chars(config.data.dir, verify=False).test
    assert np.isfinite(full["bpc"]) and full["count"] == len(test_split) - 1


def test_unit_norm_projection_after_updates(run, data_dir, tmp_path):
    _, workdir, _ = run
    _, _, state, _ = training.load_run(workdir)
    layer = state["params"]["layers"][0]
    for name in ("w_x", "w_h"):
        norms = np.linalg.norm(np.asarray(layer[name]), axis=0)
        np.testing.assert_allclose(norms, 1.0, rtol=0, atol=1e-5, err_msg=name)

    config = tiny_ptb_config(
        data_dir, variant="lstm", num_steps=4, checkpoint_every=4, eval_every=4
    )
    assert not config.opt.unit_norm_projection
    training.train_and_evaluate(config, tmp_path)
    _, _, state, _ = training.load_run(tmp_path)
    for name in ("w_x", "w_h"):
        norms = np.linalg.norm(np.asarray(state["params"]["layers"][0][name]), axis=0)
        assert np.max(np.abs(norms - 1.0)) > 1e-4, name  # orthonormal at init, then trained


def test_projection_reaches_cells_and_weight_normalized_linears():
    rng = np.random.default_rng(0)
    cell = {k: jnp.asarray(rng.normal(size=(3, 8))) for k in ("w_x", "w_h")}
    cell["gamma_x"] = cell["gamma_h"] = jnp.ones(8)
    wn_layer = {"w": jnp.asarray(rng.normal(size=(4, 5))), "gamma": jnp.ones(5), "b": jnp.ones(5)}
    plain = {"w": jnp.asarray(rng.normal(size=(4, 5))), "b": jnp.ones(5)}
    params = {"encoder": cell, "mu": wn_layer, "head": plain, "layers": [cell]}

    def norms(tree):
        return np.linalg.norm(np.asarray(tree["w" if "w" in tree else "w_h"]), axis=0)

    out = projection.project_tree(params, cells=True, linears=True)
    for path in (("encoder",), ("mu",), ("layers", 0)):
        node = functools.reduce(lambda t, k: t[k], path, out)
        np.testing.assert_allclose(norms(node), 1.0, rtol=1e-6, err_msg=str(path))
    np.testing.assert_array_equal(out["head"]["w"], plain["w"])  # a plain layer is left alone
    only_cells = projection.project_tree(params, cells=True, linears=False)
    np.testing.assert_array_equal(only_cells["mu"]["w"], wn_layer["w"])
    np.testing.assert_allclose(norms(only_cells["encoder"]), 1.0, rtol=1e-6)


def test_load_run_reads_an_old_config_over_the_defaults(run, tmp_path):
    """A run saved before some fields existed loads with their defaults, to the same state."""
    config, finished, _ = run
    workdir = tmp_path / "old_run"
    shutil.copytree(finished, workdir)
    stored = json.loads((workdir / "config.json").read_text())
    for group, name in [
        ("model", "gamma_init"),
        ("model", "matmul_dtype"),
        ("model", "variance_method"),
        ("model", "forget_bias"),
        ("data", "permute"),
        ("train", "data_parallel"),
    ]:
        del stored[group][name]
    (workdir / "config.json").write_text(json.dumps(stored))
    loaded, _, state, step = training.load_run(workdir)
    assert step == 12
    assert loaded.to_dict() == config.to_dict()  # the missing fields took base_config's values
    _, _, reference, _ = training.load_run(finished)
    assert_trees_equal(state, reference)


def test_load_run_validates_the_config(run, tmp_path):
    _, finished, _ = run
    workdir = tmp_path / "bad_run"
    shutil.copytree(finished, workdir)
    stored = json.loads((workdir / "config.json").read_text())
    stored["model"]["hidden_size"] = 0
    stored["opt"]["decay_every"] = "batch"
    (workdir / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="config.model.hidden_size must be a positive integer"):
        training.load_run(workdir)
    with pytest.raises(ValueError, match="unknown config.opt.decay_every 'batch'"):
        training.load_run(workdir)


# ---------------------------------------------------------------------------------------------
# Divergence: a wrapped task whose loss or gradients become NaN at a given update.


def poisoned_build_task(*, nan_loss_from=None, nan_grads_at=None):
    """A build_task whose task counts its updates in the model state and then misbehaves.

    ``nan_loss_from=k``: the loss is NaN from the update of 0-based step k on (gradients stay
    finite). ``nan_grads_at=k``: at step k the gradients are NaN while the loss stays finite.
    """

    def build(config):
        task = build_task(config)

        def init(key):
            params, consts, model_state = task.init(key)
            return params, consts, {"inner": model_state, "updates": jnp.zeros((), jnp.int32)}

        def loss(params, consts, model_state, batch, key, training):
            value, aux = task.loss(params, consts, model_state["inner"], batch, key, training)
            n = model_state["updates"]
            if nan_loss_from is not None:
                value = jnp.where(n >= nan_loss_from, jnp.nan, value)
            if nan_grads_at is not None:
                # d/db sqrt(0 * b + 0) = 0 / 0: NaN gradients, and a term whose value cancels.
                term = jnp.sum(jnp.sqrt(0.0 * params["head"]["b"] + (n != nan_grads_at)))
                value = value + (term - jax.lax.stop_gradient(term))
            return value, aux

        def update_state(model_state, moments):
            return {
                "inner": task.update_state(model_state["inner"], moments),
                "updates": model_state["updates"] + 1,
            }

        def evaluate(params, consts, model_state, *args, **kwargs):
            return task.evaluate(params, consts, model_state["inner"], *args, **kwargs)

        return dataclasses.replace(
            task, init=init, loss=loss, update_state=update_state, evaluate=evaluate
        )

    return build


def test_nan_loss_stops_and_keeps_last_good_checkpoint(monkeypatch, data_dir, tmp_path):
    monkeypatch.setattr(training, "build_task", poisoned_build_task(nan_loss_from=5))
    config = tiny_ptb_config(data_dir)
    with pytest.raises(training.TrainingDiverged) as info:
        training.train_and_evaluate(config, tmp_path)
    message = str(info.value)
    assert "nan" in message.lower()
    assert "step 6" in message  # the 6th update's loss
    assert "step 4" in message and str(tmp_path / "checkpoints") in message
    assert checkpoint_steps(tmp_path) == [4]
    assert max(r["step"] for r in read_metrics(tmp_path)) == 4

    _, _, state, step = training.load_run(tmp_path)
    assert step == 4 and int(state["model_state"]["updates"]) == 4
    assert not nprnn.tasks.tree_has_nonfinite(state)


def test_nan_gradients_are_not_saved(monkeypatch, data_dir, tmp_path):
    monkeypatch.setattr(training, "build_task", poisoned_build_task(nan_grads_at=7))
    config = tiny_ptb_config(data_dir)
    with pytest.raises(FloatingPointError):  # TrainingDiverged, or any report of the NaN
        training.train_and_evaluate(config, tmp_path)
    _, _, state, step = training.load_run(tmp_path)
    assert not nprnn.tasks.tree_has_nonfinite(state["params"]), f"NaN params at step {step}"


# ---------------------------------------------------------------------------------------------
# Unreadable checkpoints.


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_corrupt_newest_checkpoint_falls_back(run, tmp_path, caplog, capsys, how):
    _, finished, _ = run
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    corrupt_checkpoint(workdir, 12, how)
    capsys.readouterr()
    caplog.clear()
    _, _, state, step = training.load_run(workdir)
    assert step == 8 and int(state["step"]) == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("checkpoint at step 12 is unreadable" in w for w in warnings), warnings
    assert capsys.readouterr().out == ""  # the library logs, it does not print


def test_resume_past_corrupt_checkpoint_saves_final_state(run, tmp_path):
    config, finished, _ = run
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    corrupt_checkpoint(workdir, 12, "truncate")
    training.train_and_evaluate(config, workdir)  # resumes from step 8
    _, _, resumed, step = training.load_run(workdir)
    _, _, uninterrupted, _ = training.load_run(finished)
    assert step == 12
    assert_trees_equal(resumed["params"], uninterrupted["params"])


# ---------------------------------------------------------------------------------------------
# make_optimizer.


@pytest.mark.parametrize("schedule", ["exponential", "inverse_time"])
@pytest.mark.parametrize("decay_every", ["update", "epoch"])
@pytest.mark.parametrize("clip_norm", [0.0, 1.0])
def test_learning_rate_schedule(schedule, decay_every, clip_norm):
    opt = base.base_config().opt
    opt.learning_rate, opt.decay, opt.decay_every, opt.clip_norm = 0.1, 0.2, decay_every, clip_norm
    opt.schedule = schedule
    opt.eps = 1e-12
    steps_per_epoch = 5
    tx, schedule = training.make_optimizer(opt, steps_per_epoch)
    period = 1 if decay_every == "update" else steps_per_epoch
    if opt.schedule == "exponential":
        expected = [0.1 * 0.8 ** (k / period) for k in range(12)]
    else:  # the released DRAW code's lr / (1 + decay * t)
        expected = [0.1 / (1.0 + 0.2 * k / period) for k in range(12)]
    np.testing.assert_allclose([schedule(k) for k in range(12)], expected, rtol=1e-6)

    # A constant gradient: Adam's bias-corrected m / sqrt(v) is sign(g), so each update is the
    # rate of its update count (the clipped gradient is constant too). rtol: the float32 bias
    # correction 1 - b2**t loses digits for small t.
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.asarray([0.3, -0.2, 0.1])}
    state = tx.init(params)
    for k in range(12):
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(
            updates["w"], -expected[k] * np.sign(grads["w"]), rtol=1e-4, err_msg=f"update {k}"
        )


def test_make_optimizer_rejects_bad_values():
    opt = base.base_config().opt
    opt.decay_every = "batch"
    with pytest.raises(ValueError, match="decay_every"):
        training.make_optimizer(opt, 10)
    opt.decay_every, opt.decay = "update", 1.0
    with pytest.raises(ValueError, match="decay"):
        training.make_optimizer(opt, 10)
    opt.decay, opt.schedule = 0.1, "cosine"
    with pytest.raises(ValueError, match="unknown opt.schedule 'cosine'"):
        training.make_optimizer(opt, 10)


# ---------------------------------------------------------------------------------------------
# train.py in subprocesses.

TRAIN_FLAGS = (
    "--config=configs/ptb_char_small.py",
    *TINY_FLAGS,
    "--config.train.num_steps=1000",
    "--config.train.log_every=25",
    "--config.train.eval_every=250",
    "--config.train.checkpoint_every=50",
)


def start_train(workdir, data_dir, *flags, log=None):
    command = [sys.executable, "train.py", f"--workdir={workdir}", f"--data_dir={data_dir}"]
    log = open(log or f"{workdir}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [*command, *flags], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    proc.log = log
    return proc


def finish(proc, timeout=300) -> str:
    proc.wait(timeout=timeout)
    proc.log.close()
    output = open(proc.log.name).read()
    assert proc.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def killed_and_resumed(data_dir, tmp_path_factory):
    """Three runs of one train.py command: one killed (SIGKILL) then rerun, two uninterrupted.

    Returns:
      ``{"resumed", "reference", "repeat"}`` workdirs, and ``"killed_at"`` (the newest
      checkpoint when the first run was killed) and ``"output"`` (of the resumed run).
    """
    root = tmp_path_factory.mktemp("train_py")
    dirs = {name: root / name for name in ("resumed", "reference", "repeat")}
    reference = start_train(dirs["reference"], data_dir, *TRAIN_FLAGS)
    victim = start_train(dirs["resumed"], data_dir, *TRAIN_FLAGS, log=root / "killed.log")
    deadline = time.monotonic() + 300
    while not checkpoint_steps(dirs["resumed"]):
        assert victim.poll() is None, open(victim.log.name).read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    victim.log.close()
    assert victim.returncode == -signal.SIGKILL
    killed_at = checkpoint_steps(dirs["resumed"])[-1]
    assert killed_at < 1000, "the run ended before it was killed"

    resumed = start_train(dirs["resumed"], data_dir, *TRAIN_FLAGS)
    repeat = start_train(dirs["repeat"], data_dir, *TRAIN_FLAGS)
    output = finish(resumed)
    finish(reference)
    finish(repeat)
    return {**dirs, "killed_at": killed_at, "output": output}


def test_resume_after_sigkill_is_bitwise_exact(killed_and_resumed):
    runs = killed_and_resumed
    assert f"resumed from step {runs['killed_at']}" in runs["output"]
    _, _, resumed, step = training.load_run(runs["resumed"])
    _, _, reference, _ = training.load_run(runs["reference"])
    assert step == 1000 and int(resumed["step"]) == 1000
    assert_trees_equal(resumed, reference)  # params, optimizer and model state, step, PRNG

    records = read_metrics(runs["resumed"])
    keys = [(r["step"], r["split"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicated metric lines after the resume"
    assert without_timing(records) == without_timing(read_metrics(runs["reference"]))


def test_same_seed_same_metrics(killed_and_resumed):
    first = read_metrics(killed_and_resumed["reference"])
    second = read_metrics(killed_and_resumed["repeat"])
    assert len(first) == 1000 // 25 + 1000 // 250
    assert without_timing(first) == without_timing(second)
    _, _, a, _ = training.load_run(killed_and_resumed["reference"])
    _, _, b, _ = training.load_run(killed_and_resumed["repeat"])
    assert_trees_equal(a["params"], b["params"])


def test_train_py_bad_config_stops_before_any_work(data_dir, tmp_path):
    workdir = tmp_path / "run"
    out = run_train_py(
        "--config=configs/ptb_char_small.py",
        f"--workdir={workdir}",
        f"--data_dir={data_dir}",
        *TINY_FLAGS,
        "--config.model.variant=bogus",
        "--config.data.batch_size=0",
    )
    assert out.returncode != 0
    assert "unknown config.model.variant 'bogus'" in out.stderr
    assert "lstm" in out.stderr and "normprop" in out.stderr  # the valid variants
    assert "config.data.batch_size must be a positive integer, got 0" in out.stderr
    assert not workdir.exists()


@pytest.fixture(scope="module")
def missing_data_run(tmp_path_factory):
    """train.py on an empty data directory, asking for no unit-norm projection."""
    root = tmp_path_factory.mktemp("missing")
    out = run_train_py(
        "--config=configs/ptb_char_small.py",
        f"--workdir={root / 'run'}",
        f"--data_dir={root / 'data'}",
        *TINY_FLAGS,
        "--config.opt.unit_norm_projection=False",
    )
    return root, out


def test_train_py_missing_data(missing_data_run):
    root, out = missing_data_run
    assert out.returncode == 2, out.stderr[-3000:]
    assert "ptb.char.train.txt" in out.stderr and "ptb.train.txt" in out.stderr
    assert str(root / "data" / "ptb" / "ptb.char.train.txt") in out.stderr
    assert text.PTB_URL in out.stderr and "--data_dir" in out.stderr
    assert "Traceback" not in out.stderr


def test_train_py_keeps_explicit_projection_flag(missing_data_run):
    root, _ = missing_data_run
    config = json.loads((root / "run" / "config.json").read_text())
    assert config["model"]["variant"] == "normprop"
    assert config["opt"]["unit_norm_projection"] is False


# ---------------------------------------------------------------------------------------------
# train.num_seeds: replicas in one jitted step.


@pytest.fixture(scope="module")
def replicas(data_dir, tmp_path_factory, run):
    """A finished 2-replica normprop run (seeds 1, 2) of the same 12 updates as ``run``, and
    the same run of 2 replicas interrupted at step 8 and resumed."""
    root = tmp_path_factory.mktemp("replicas")
    config = tiny_ptb_config(data_dir, num_seeds=2)
    with config.unlocked():
        config.seed = 1
    training.train_and_evaluate(config, root / "full")
    shutil.copytree(root / "full", root / "resumed")
    shutil.rmtree(root / "resumed" / "checkpoints" / "12")
    training.train_and_evaluate(config, root / "resumed")
    return config, root


def test_num_seeds_metrics_hold_one_value_per_replica(replicas):
    _, root = replicas
    records = read_metrics(root / "full")
    assert [r["step"] for r in records if r["split"] == "valid"] == [6, 12]
    for r in records:
        for name in ("loss", "bpc") + (("grad_norm",) if r["split"] == "train" else ("count",)):
            assert isinstance(r[name], list) and len(r[name]) == 2, (name, r)
            assert all(np.isfinite(r[name])), (name, r)
    last = records[-1]
    assert last["loss"][0] != last["loss"][1]  # two different seeds


def test_num_seeds_replica_is_the_run_of_its_seed(replicas, run, data_dir, tmp_path):
    """Replica r of a run with seed s is the plain run of seed s + r: its init, data order and
    keys (replica 1 of seed 1 here against the plain run of seed 2)."""
    config, root = replicas
    _, _, state, step = training.load_run(root / "full")
    assert step == 12 and state["step"].tolist() == [12, 12]
    single = tiny_ptb_config(data_dir)
    with single.unlocked():
        single.seed = 2
    training.train_and_evaluate(single, tmp_path)
    _, _, alone, _ = training.load_run(tmp_path)
    second = training.replica(state["params"], 1)
    assert jax.tree.structure(second) == jax.tree.structure(alone["params"])
    paths, _ = jax.tree_util.tree_flatten_with_path(alone["params"])
    for (path, leaf), batched in zip(paths, jax.tree.leaves(second), strict=True):
        np.testing.assert_allclose(batched, leaf, rtol=2e-4, atol=2e-6, err_msg=str(path))
    valid = [r for r in read_metrics(root / "full") if r["split"] == "valid"][-1]
    alone_valid = [r for r in read_metrics(tmp_path) if r["split"] == "valid"][-1]
    assert valid["bpc"][1] == pytest.approx(alone_valid["bpc"], rel=1e-4)


def test_num_seeds_resume_is_exact(replicas):
    _, root = replicas
    _, _, full, _ = training.load_run(root / "full")
    _, _, resumed, step = training.load_run(root / "resumed")
    assert step == 12
    assert_trees_equal(resumed["params"], full["params"])

    def untimed(workdir):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(workdir)]

    assert untimed(root / "resumed") == untimed(root / "full")


def test_num_seeds_evaluation_and_table_report_every_replica(replicas):
    _, root = replicas
    record = evaluation.evaluate_run(root / "full", "valid", max_batches=2, samples=False)
    assert len(record["metrics"]["bpc"]) == 2
    rows = [r for r in reports.table_rows(1, [root / "full"], evaluate=False) if r.variant]
    assert len(rows) == 1 and rows[0].n == 2
    assert rows[0].ours == pytest.approx(np.mean(record["metrics"]["bpc"]))
    assert "(n=2)" in reports.format_table(1, rows)


# train.replicas="processes": each seed an ordinary run in its own single-threaded process.


def test_replicas_as_processes_are_the_runs_of_their_seeds(run, data_dir, tmp_path):
    single, single_dir, _ = run
    config = tiny_ptb_config(data_dir, num_seeds=2, replicas="processes")
    with config.unlocked():
        config.seed = single.seed
    metrics = train_in_processes(config, tmp_path)
    seeds = runs.replica_runs(tmp_path)
    assert [p.name for p in seeds] == [f"seed{single.seed}", f"seed{single.seed + 1}"]
    for offset, path in enumerate(seeds):
        stored = runs.read_config(path)
        assert (stored["seed"], stored["train"]["num_seeds"]) == (single.seed + offset, 1)
        assert (path / "train.log").exists()
    alone = [r for r in read_metrics(single_dir) if r["split"] == "valid"][-1]
    assert metrics["bpc"][0] == pytest.approx(alone["bpc"], rel=1e-4)
    assert metrics["bpc"][0] != metrics["bpc"][1]  # two different seeds
    assert runs.resolve_runs([str(tmp_path)]) == seeds
    rows = [r for r in reports.table_rows(1, seeds, evaluate=False) if r.variant]
    assert len(rows) == 1 and rows[0].n == 2


def test_replicas_as_processes_name_the_log_of_a_failed_seed(tmp_path):
    config = tiny_ptb_config(tmp_path / "no_data", num_seeds=2, replicas="processes")
    with pytest.raises(ReplicaFailed, match=r"seed0.*train\.log"):
        train_in_processes(config, tmp_path / "run", cores=[0])
    assert "no_data" in (tmp_path / "run" / "seed0" / "train.log").read_text()
