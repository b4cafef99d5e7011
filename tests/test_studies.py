"""The study scripts (scripts/study_*.sh), run tiny on fake PTB files: they train, evaluate, copy
what is worth keeping, and a second call resumes instead of training again."""

from __future__ import annotations

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


def test_table2_study_trains_evaluates_the_test_stream_and_resumes(tmp_path):
    data, runs, out = write_fake_ptb(tmp_path / "data"), tmp_path / "runs", tmp_path / "out"
    env = dict(
        os.environ,
        PY=sys.executable,
        SEEDS="1",
        ORDER="lstm",
        CORES="0",
        NICE="0",  # the scripts yield to other work at 10; a test is that work
        OUT=str(out),
        EXTRA=" ".join(TINY_RUN),
    )

    def study():
        result = subprocess.run(
            ["bash", "scripts/study_table2.sh", str(runs), str(data)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    first = study()
    kept = out / "lstm" / "seed0"
    assert sorted(p.name for p in kept.iterdir()) == [
        "config.json",
        "eval_test_stream.json",
        "metrics.jsonl",
    ]
    config = json.loads((kept / "config.json").read_text())
    assert config["opt"]["learning_rate"] == 1.6e-2  # the row's tuned rate
    assert config["model"]["recurrent_dropout"] == 0.1 and config["model"]["input_norm"]
    record = json.loads((kept / "eval_test_stream.json").read_text())
    assert (record["split"], record["protocol"], record["step"]) == ("test", "stream", 4)
    assert "| Recurrent Dropout LSTM | `lstm`: H=8" in first.stdout
    assert (out / "table2.md").exists()
    metrics = (kept / "metrics.jsonl").read_text()
    evaluated = (runs / "lstm" / "seed0" / "eval_test_stream.json").stat().st_mtime_ns

    study()  # finished: neither trained nor evaluated again
    assert (kept / "metrics.jsonl").read_text() == metrics
    assert (runs / "lstm" / "seed0" / "eval_test_stream.json").stat().st_mtime_ns == evaluated
