"""Two train.py processes on 127.0.0.1 train one run (train.py --distributed, nprnn.distributed).

One CPU device per process, gloo collectives between them, on the tiny char-LM config of
tests/fake_data.py. The run goes through every multi-process path once, and its metrics are
compared with one process of two forced host devices, the same seed and the same global batch:

1. (beside the single-process reference) two processes start in a workdir holding an old run,
   with --restart: process 0 archives the old run once and writes every metrics row once; the
   checkpoints hold both processes' parts (orbax's multi-process save). Process 1 is killed
   (SIGKILL) once checkpoint 12 is on disk: process 0 exits, naming the lost process;
2. (beside a single process that loads the newest checkpoint with training.load_run, as eval.py
   does) both are started again, with a corrupt checkpoint newer than every real one: process 0
   moves it aside once, and the run resumes from the newest real checkpoint to step 60 (fewer
   steps than the killed run was given: ``train.num_steps`` may change on resume) and ends.

Every subprocess has a timeout, so that a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from fake_data import REPO, TINY_FLAGS, write_fake_ptb

# The reference's length: long enough that the second two-process run is still training when
# its peer is killed at checkpoint 24. Rows up to any multiple of 6 are those of a run of that
# length (log every 2, evaluate and save every 6).
REFERENCE_STEPS = 240
KILL_AT, LAST_STOP = 12, 60
HEARTBEAT_TIMEOUT_S = 5
TIMEOUT_S = 120  # any one subprocess; a hang fails here
# Compared to float32 rounding: the train and valid rows' numbers.
COMPARED = ("loss", "grad_norm", "bpc", "learning_rate", "count")

LOAD_RUN = textwrap.dedent(
    """
    import json, sys
    from nprnn import training
    config, task, state, step = training.load_run(sys.argv[1])
    valid = task.evaluate(state["params"], state["consts"], state["model_state"], "valid",
                          max_batches=config.train.eval_batches)
    print(json.dumps({"step": step, "valid_loss": float(valid["loss"])}))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(tmp_path, devices: int) -> dict:
    """The environment of a subprocess: CPU only, ``devices`` host devices, a compilation cache
    shared by the test's processes (the later runs skip most of the compiling)."""
    out = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax_cache")
    out["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return out


def train_flags(data_dir, workdir, num_steps: int, *extra: str) -> list[str]:
    return [
        "--config=configs/ptb_char_small.py",
        f"--workdir={workdir}",
        f"--data_dir={data_dir}",
        *TINY_FLAGS,
        f"--config.train.num_steps={num_steps}",
        "--config.train.log_every=2",
        "--config.train.eval_every=6",
        "--config.train.checkpoint_every=6",
        *extra,
    ]


class Proc:
    """A subprocess with its output in files (no pipe to fill up) and a deadline."""

    def __init__(self, name: str, args: list[str], env: dict, logs: pathlib.Path):
        self.name = name
        self.out, self.err = logs / f"{name}.out", logs / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.popen = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=err
            )
        self.started = time.monotonic()

    def wait(self, timeout: float = TIMEOUT_S) -> int:
        left = max(1.0, timeout - (time.monotonic() - self.started))
        try:
            return self.popen.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"{self.name} still running after {timeout}s:\n{self.stderr[-3000:]}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def check(self) -> None:
        rc = self.wait()
        assert rc == 0, f"{self.name} exited with {rc}:\n{self.stderr[-3000:]}"


def start_pair(name, data_dir, workdir, num_steps, tmp_path, *extra) -> list[Proc]:
    """Process 0 and process 1 of one two-process run, one CPU device each."""
    address = f"127.0.0.1:{free_port()}"
    return [
        Proc(
            f"{name}.p{i}",
            [
                "train.py",
                *train_flags(data_dir, workdir, num_steps, *extra),
                "--distributed",
                f"--coordinator_address={address}",
                "--num_processes=2",
                f"--process_id={i}",
                f"--heartbeat_timeout_seconds={HEARTBEAT_TIMEOUT_S}",
            ],
            env(tmp_path, devices=1),
            tmp_path,
        )
        for i in (0, 1)
    ]


def kill_all(procs) -> None:
    for p in procs:
        p.kill()


def rows(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def max_difference(got: list[dict], want: list[dict]) -> float:
    """The largest absolute difference of the compared numbers of two lists of metric rows,
    after checking that they hold the same rows (step, split) in the same order."""
    assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want]
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        keys = [k for k in COMPARED if k in w]
        assert keys and [k for k in COMPARED if k in g] == keys, (g, w)
        a, b = np.array([g[k] for k in keys]), np.array([w[k] for k in keys])
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0, err_msg=f"step {w['step']}")
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def checkpoint_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def metric_logs(text: str) -> list[str]:
    return [line for line in text.splitlines() if "train loss" in line or "valid {" in line]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fake_ptb(tmp_path_factory.mktemp("data"))


def test_two_processes_train_survive_a_lost_peer_and_resume_like_one(data_dir, tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    procs: list[Proc] = []
    try:
        # 1. The single-process reference (2 forced devices), and two processes in a workdir
        #    that holds an old run (--restart archives it); process 1 is killed (SIGKILL) once
        #    checkpoint 12 is on disk.
        reference = Proc(
            "reference",
            [
                "train.py",
                *train_flags(data_dir, ref_dir, REFERENCE_STEPS),
                f"--config.train.checkpoint_every={REFERENCE_STEPS}",  # rows unchanged
            ],
            env(tmp_path, devices=2),
            tmp_path,
        )
        procs.append(reference)
        run_dir.mkdir()
        (run_dir / "config.json").write_text('{"old": "run"}\n')
        (run_dir / "metrics.jsonl").write_text('{"step": 1, "old": true}\n')
        pair = start_pair("first", data_dir, run_dir, REFERENCE_STEPS, tmp_path, "--restart")
        procs += pair
        p0, p1 = pair
        deadline = time.monotonic() + TIMEOUT_S
        while not (run_dir / "checkpoints" / str(KILL_AT)).is_dir():
            assert p0.popen.poll() is None and p1.popen.poll() is None, (
                f"a process ended before checkpoint {KILL_AT}:\n{p0.stderr[-3000:]}"
                f"\n{p1.stderr[-3000:]}"
            )
            assert time.monotonic() < deadline, f"no checkpoint {KILL_AT} after {TIMEOUT_S}s"
            time.sleep(0.02)
        p1.popen.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        rc = p0.wait(timeout=(killed - p0.started) + HEARTBEAT_TIMEOUT_S + 20)
        exit_s = time.monotonic() - killed
        assert p1.wait() == -signal.SIGKILL
        # In a collective with the dead process (most of the time): train.py's message and
        # code 4 at once. Waiting at one of orbax's barriers: the coordination service's verdict
        # after the heartbeat timeout, caught by train.py too, or JAX's own abort naming task 1.
        assert rc in (4, -signal.SIGABRT), f"process 0 exited with {rc}:\n{p0.stderr[-3000:]}"
        assert (
            "error: lost process 1 of this 2-process run; this is process 0" in p0.stderr
            or "stopped sending heartbeats):\n1\n" in p0.stderr
        ), p0.stderr[-3000:]
        assert exit_s < HEARTBEAT_TIMEOUT_S + 20  # bounded: the heartbeat timeout at most
        print(f"\nprocess 0 exited {exit_s:.2f}s after process 1 was killed (code {rc})")
        reference.check()

        want = [r for r in rows(ref_dir) if r["step"] <= LAST_STOP]
        first = rows(run_dir)  # up to the kill
        assert [r["step"] for r in first if r["split"] == "train"][:6] == list(range(2, 13, 2))
        diff_first = max_difference(first, want[: len(first)])
        # Process 0 alone reports the metrics (absl on stderr).
        assert len(metric_logs(p0.stderr)) == len(first)
        assert metric_logs(p1.stderr) == []
        # The old run was archived once, whole.
        (archive,) = (run_dir / "archived").iterdir()
        assert sorted(p.name for p in archive.iterdir()) == ["config.json", "metrics.jsonl"]
        assert (archive / "config.json").read_text() == '{"old": "run"}\n'
        # orbax's multi-process save: both processes wrote their part of every checkpoint.
        real = checkpoint_steps(run_dir)
        assert real[:2] == [6, KILL_AT] and real[-1] < LAST_STOP - 6, real
        for step in real:
            saved = run_dir / "checkpoints" / str(step) / "default" / "array_metadatas"
            assert sorted(p.name for p in saved.iterdir()) == ["process_0", "process_1"]

        # 2. Beside one process loading the newest checkpoint as eval.py does: both again, with
        #    fewer steps and a corrupt checkpoint newer than every real one.
        copy = tmp_path / "copy"
        shutil.copytree(run_dir, copy)
        loader = Proc("load_run", ["-c", LOAD_RUN, str(copy)], env(tmp_path, devices=1), tmp_path)
        procs.append(loader)
        fake = run_dir / "checkpoints" / str(LAST_STOP - 6)
        shutil.copytree(run_dir / "checkpoints" / str(real[-1]), fake)
        for path in fake.rglob("*"):
            if path.is_file():
                path.write_bytes(b"\xffgarbage\x00" * 7)
        pair = start_pair("second", data_dir, run_dir, LAST_STOP, tmp_path)
        procs += pair
        for p in pair:
            p.check()
        p0, p1 = pair
        for p in pair:
            assert f"resumed from step {real[-1]} " in p.stderr
        # Moved aside once, with the metrics logged after the checkpoint resumed from (process 0
        # may have died before logging any: then there are none to keep).
        moved, *kept = sorted((run_dir / "unreadable_checkpoints").iterdir())
        assert moved.name.startswith(f"{LAST_STOP - 6}-") and moved.is_dir()
        logged_after = [r for r in first if r["step"] > real[-1]]
        assert len(kept) == (1 if logged_after else 0), (kept, logged_after)
        if kept:
            assert kept[0].name.startswith(f"metrics-after-{real[-1]}-")
            kept_rows = [json.loads(line) for line in kept[0].read_text().splitlines()]
            assert kept_rows == logged_after
        got = rows(run_dir)
        assert len({(r["step"], r["split"]) for r in got}) == len(got)  # each row once
        diff = max(diff_first, max_difference(got, want))
        print(f"largest difference from one process with two devices: {diff:g}")
        assert len(metric_logs(p0.stderr)) == len([r for r in got if r["step"] > real[-1]])
        assert metric_logs(p1.stderr) == []
        assert "done: valid" in p0.stdout and "done:" not in p1.stdout

        loader.check()
        loaded = json.loads(loader.stdout.splitlines()[-1])
        (valid,) = [r for r in want if r["step"] == real[-1] and r["split"] == "valid"]
        assert loaded["step"] == real[-1]
        np.testing.assert_allclose(loaded["valid_loss"], valid["loss"], rtol=1e-6)
    finally:
        kill_all(procs)
