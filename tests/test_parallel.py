"""Data-parallel training on 2 forced CPU devices equals single-device training."""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys, jax, numpy as np
    from configs.ptb_char_small import get_config
    from nprnn import training

    workdir, data_dir, parallel = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    c = get_config()
    c.data.dir, c.data.download, c.data.verify = data_dir, False, False
    c.model.variant = "lstm"
    c.opt.unit_norm_projection = False
    c.model.hidden_size, c.data.batch_size, c.data.seq_len = 16, 8, 12
    c.train.num_steps = c.train.eval_every = c.train.checkpoint_every = 2
    c.train.log_every, c.train.eval_batches = 1, 1
    c.train.data_parallel = parallel
    training.train_and_evaluate(c, workdir)
    _, _, state, _ = training.load_run(workdir)
    leaves = [np.asarray(x) for x in jax.tree.leaves(state["params"])]
    np.savez(workdir + "/params.npz", *leaves)
    print("devices", jax.device_count())
    """
)


@pytest.fixture(scope="module")
def fake_ptb(tmp_path_factory):
    d = tmp_path_factory.mktemp("ptb")
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    for split, lines in (("train", 400), ("valid", 40), ("test", 40)):
        text = "".join(" " + " ".join(rng.choice(words, 6)) + " \n" for _ in range(lines))
        (d / f"ptb.{split}.txt").write_text(text)
    return d


def _run(workdir, data_dir, parallel, devices):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(workdir), str(data_dir), "1" if parallel else "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"devices {devices}" in out.stdout
    return np.load(workdir / "params.npz")


def test_sharded_step_equals_single_device(tmp_path, fake_ptb):
    single = _run(tmp_path / "single", fake_ptb, parallel=False, devices=1)
    sharded = _run(tmp_path / "sharded", fake_ptb, parallel=True, devices=2)
    assert list(single) == list(sharded)
    for name in single:
        np.testing.assert_allclose(sharded[name], single[name], rtol=1e-5, atol=1e-6)
