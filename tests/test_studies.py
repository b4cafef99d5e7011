"""The study scripts (scripts/study_*.sh), run tiny on fake PTB files: they train, evaluate, copy
what is worth keeping, and a second call resumes instead of training again."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys

from fake_data import REPO, TINY_FLAGS, write_fake_ptb

TINY_RUN = (
    *TINY_FLAGS,
    "--config.train.num_steps=4",
    "--config.train.log_every=2",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=4",
)


def run_study(script, runs, data, **env):
    """Runs scripts/<script> on one core, not niced (the scripts yield to other work at 10; a test
    is that work), tiny (EXTRA), and returns its completed process."""
    env = dict(os.environ, PY=sys.executable, CORES="0", NICE="0", EXTRA=" ".join(TINY_RUN), **env)
    result = subprocess.run(
        ["bash", f"scripts/{script}", str(runs), str(data)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _keep_script():
    """scripts/keep.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("keep", REPO / "scripts" / "keep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_kept(kept, *, step):
    """Checks a run's directory under OUT (its config, its metrics and its test-stream evaluation
    at ``step``) and returns its config."""
    assert sorted(p.name for p in kept.iterdir()) == [
        "config.json",
        "eval_test_stream.json",
        "metrics.jsonl",
    ]
    record = json.loads((kept / "eval_test_stream.json").read_text())
    assert (record["split"], record["protocol"], record["step"]) == ("test", "stream", step)
    return json.loads((kept / "config.json").read_text())


def test_table2_study_trains_evaluates_the_test_stream_and_resumes(tmp_path):
    data, runs, out = write_fake_ptb(tmp_path / "data"), tmp_path / "runs", tmp_path / "out"
    study = functools.partial(
        run_study, "study_table2.sh", runs, data, SEEDS="1", ORDER="lstm", OUT=str(out)
    )

    first = study()
    kept = out / "lstm" / "seed0"
    config = assert_kept(kept, step=4)
    assert config["opt"]["learning_rate"] == 1.6e-2  # the row's tuned rate
    assert config["model"]["recurrent_dropout"] == 0.1 and config["model"]["input_norm"]
    assert "| Recurrent Dropout LSTM | `lstm`: H=8" in first.stdout
    assert (out / "table2.md").exists()
    metrics = (kept / "metrics.jsonl").read_text()
    # scripts/keep.py compares the rows without the timing fields train.py logs: the same names.
    train_row = next(r for r in map(json.loads, metrics.splitlines()) if r["split"] == "train")
    assert set(_keep_script().TIMING_FIELDS) <= set(train_row), train_row
    evaluated = (runs / "lstm" / "seed0" / "eval_test_stream.json").stat().st_mtime_ns

    study()  # finished: neither trained nor evaluated again
    assert (kept / "metrics.jsonl").read_text() == metrics
    assert (runs / "lstm" / "seed0" / "eval_test_stream.json").stat().st_mtime_ns == evaluated


def test_lr_study_at_a_width_evaluates_the_test_stream_and_resumes(tmp_path):
    """study_lr.sh with HIDDEN (runs in <RUNS>_h<H>) and TEST_STREAM=1 (Table 2's unregularized
    rows): the run is kept under OUT/<row>/lr<lr>/seed<k> with its test-stream evaluation."""
    data, runs, out = write_fake_ptb(tmp_path / "data"), tmp_path / "runs", tmp_path / "out"
    study = functools.partial(
        run_study, "study_lr.sh", runs, data,
        SEEDS="1", LRS="4e-3", ORDER="lstm", HIDDEN="8", TEST_STREAM="1", OUT=str(out),
    )  # fmt: skip

    study()
    kept = out / "lstm" / "lr4e-3" / "seed1"
    config = assert_kept(kept, step=4)
    assert config["opt"]["learning_rate"] == 4e-3 and config["seed"] == 1
    assert config["model"]["hidden_size"] == 8 and config["model"]["variant"] == "lstm"
    run = tmp_path / "runs_h8" / "lstm" / "lr4e-3" / "seed1"
    metrics, evaluated = (kept / "metrics.jsonl").read_text(), run / "eval_test_stream.json"
    mtime = evaluated.stat().st_mtime_ns

    study()  # finished: neither trained nor evaluated again
    assert (kept / "metrics.jsonl").read_text() == metrics
    assert evaluated.stat().st_mtime_ns == mtime


def test_keep_leaves_a_copy_with_the_same_values_but_for_timings(tmp_path):
    """scripts/keep.py: a retrained run (same values, other timings) leaves the committed copy
    as it was; any other difference replaces it; a missing copy is made."""
    run, dest = tmp_path / "run", tmp_path / "results" / "row" / "seed0"
    run.mkdir()

    def write_run(loss, steps_per_s, sample):
        row = {"step": 2, "split": "train", "loss": loss, "steps_per_s": steps_per_s,
               "s_per_epoch": 10 / steps_per_s}  # fmt: skip
        (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
        (run / "eval.json").write_text(json.dumps({"sample": sample}))

    def keep():
        subprocess.run(
            [sys.executable, "scripts/keep.py", str(dest), str(run / "metrics.jsonl"),
             str(run / "eval.json")],
            cwd=REPO, check=True, timeout=60,
        )  # fmt: skip
        return [(dest / name).read_text() for name in ("metrics.jsonl", "eval.json")]

    write_run(1.5, 3.0, "abc")
    first = keep()
    assert first == [(run / name).read_text() for name in ("metrics.jsonl", "eval.json")]
    write_run(1.5, 4.0, "abc")  # trained again: other timings only
    assert keep() == first
    write_run(1.25, 4.0, "abc")  # another value
    assert json.loads(keep()[0])["loss"] == 1.25
    write_run(1.25, 4.0, "abd")  # another file, byte for byte
    assert json.loads(keep()[1])["sample"] == "abd"
