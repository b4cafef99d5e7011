"""Tests of the evaluation modules (nprnn.runs, nprnn.evaluation, nprnn.reports, nprnn.plots)
and of nprnn.gradient_flow (Figure 1).

No training here: the runs are fake directories with the files a training run writes
(config.json, metrics.jsonl) and the evaluation files eval.py writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import nprnn
from nprnn import evaluation, plots, reports, runs
from nprnn import gradient_flow as gf
from nprnn.configs import base_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = gf.FlowConfig(hidden_size=32, batch_size=8, burn_in=30, steps=30, probes=2)


# ----------------------------------------------------------------------------------------------
# Figure 1: gradient flow at initialization.


@pytest.fixture(scope="module")
def line_gamma_h():
    """Metrics along gamma_h at gamma_x = 1, gamma_c = 1 (one compilation for the module)."""
    gamma_h = np.array([0.125, 0.25, 0.5, 1.0, 2.0, 4.0])
    gammas = np.stack([np.ones(6), gamma_h, np.ones(6)], axis=1)
    return gamma_h, gf.flow_metrics(gammas, TINY)


def test_flow_metrics_of_the_released_form():
    gammas = np.array([[2.0, 2.0, 1.0], [1.0, 0.5, 1.0]])
    paper = gf.flow_metrics(gammas, TINY)
    released = gf.flow_metrics(gammas, dataclasses.replace(TINY, compensation="released"))
    assert set(released) == set(gf.METRICS) | {"s_h"}
    np.testing.assert_allclose(released["s_h"], [nprnn.tanh_std(2.0), nprnn.tanh_std(0.5)])
    for name in gf.METRICS:
        assert np.all(np.isfinite(released[name])) and np.all(released[name] > 0), name
    # A different model at the same gammas: its constants do not aim at unit variance.
    assert not np.allclose(released["var_h"], paper["var_h"], rtol=0.05)
    with pytest.raises(ValueError, match="unknown compensation 'eq15'"):
        gf.flow_metrics(gammas, dataclasses.replace(TINY, compensation="eq15"))


def test_flow_metrics_finite_and_positive(line_gamma_h):
    _, out = line_gamma_h
    assert set(out) == set(gf.METRICS) | {"var_c"}
    for name, values in out.items():
        assert values.shape == (6,), name
        assert np.all(np.isfinite(values)) and np.all(values > 0), (name, values)


def test_growth_increases_with_gamma_h(line_gamma_h):
    """The known qualitative fact of section 4: more recurrence, more gradient through time."""
    _, out = line_gamma_h
    for name in ("growth", "growth_state", "one_step_rms"):
        assert np.all(np.diff(out[name]) > 0), (name, out[name])
        assert out[name][-1] > 1.2 * out[name][3], (name, out[name])
    # Recurrence-dominated: gradients grow; input-dominated: they vanish.
    assert out["growth"][-1] > 1.0 > out["growth"][0]


def test_spectral_norm_between_rms_and_frobenius(line_gamma_h):
    """RMS singular value <= largest singular value <= Frobenius norm = sqrt(H) * RMS."""
    _, out = line_gamma_h
    rms, spectral = out["one_step_rms"], out["one_step_spectral"]
    assert np.all(spectral >= rms * (1 - 1e-4))
    assert np.all(spectral <= rms * math.sqrt(TINY.hidden_size) * (1 + 1e-4))


def test_paper_ptb_gammas_have_unit_variance_and_exploding_growth():
    """At (2, 2, 1) the analytic constants give Var[h] ~ 1 and the gradient grows per step."""
    cfg = gf.FlowConfig(hidden_size=64, batch_size=8, burn_in=50, steps=30, probes=1)
    out = gf.flow_metrics(np.array([[2.0, 2.0, 1.0]]), cfg)
    assert 0.8 < out["var_h"][0] < 1.25
    assert out["growth"][0] > 1.05


def test_flow_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[G, 3\]"):
        gf.flow_metrics(np.ones((2, 2)), TINY)
    with pytest.raises(ValueError, match="positive"):
        gf.flow_metrics(np.array([[1.0, 0.0, 1.0]]), TINY)
    with pytest.raises(ValueError, match="probes"):
        gf.flow_metrics(np.ones((1, 3)), gf.FlowConfig(steps=2, probes=3))


def test_figure1_study_and_heatmaps(tmp_path):
    study = gf.figure1_study((0.1, 1.0), num=3, low=0.25, high=4.0, config=TINY)
    assert study["growth"].shape == (2, 3, 3)
    np.testing.assert_allclose(study["gamma_x"], [0.25, 1.0, 4.0])
    # Rows are gamma_h: growth increases down every column, for both gamma_c.
    assert np.all(np.diff(study["growth"], axis=1) > 0)
    rows = gf.crossings(study, "growth")
    assert set(rows) == {0.1, 1.0} and len(rows[1.0]) == 3
    paths = plots.plot_figure1(study, tmp_path, metrics=("growth", "var_h"))
    assert [p.name for p in paths] == ["figure1_growth.png", "figure1_var_h.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_critical_gammas_at_the_edge():
    crit = gf.critical_gammas(1.0, gamma_x=1.0, low=0.1, high=4.0, num=7, config=TINY)
    assert crit.bracketed
    assert crit.gamma_x == 1.0 and crit.gamma_c == 1.0 and 0.1 < crit.gamma_h < 4.0
    assert crit.gammas == (crit.gamma_x, crit.gamma_h, crit.gamma_c)
    assert abs(math.log(crit.growth)) < 0.1  # growth near 1 at the interpolated crossing


def test_log_crossing():
    xs = np.array([1.0, 2.0, 4.0])
    assert gf._log_crossing(xs, np.array([0.5, 2.0, 4.0])) == pytest.approx(math.sqrt(2.0))
    assert gf._log_crossing(xs, np.array([2.0, 3.0, 4.0])) is None


# ----------------------------------------------------------------------------------------------
# Fake runs.


def _run(root, name, *, task="ptb_char", variant="lstm", hidden=1000, s_per_epoch=100.0, **model):
    """A run directory with config.json, a metrics.jsonl of 5 train lines and 2 valid lines."""
    run = root / name
    run.mkdir()
    c = base_config()
    c.task = task
    c.model.variant = variant
    c.model.hidden_size = hidden
    c.data.batch_size = 32
    for key, value in model.items():
        c.model[key] = value
    (run / "config.json").write_text(c.to_json_best_effort(indent=2))
    metric = "bpc" if task == "ptb_char" else "nats"
    lines = []
    for k, step in enumerate((100, 200, 300, 400, 500)):
        # The first line includes the jit compilation: ten times slower.
        spe = s_per_epoch * (10.0 if k == 0 else 1.0 + 0.01 * k)
        lines.append(
            {"step": step, "split": "train", "loss": 1.0, metric: 3.0 - 0.1 * k,
             "steps_per_s": 1000.0 / spe, "s_per_epoch": spe}
        )  # fmt: skip
    lines += [
        {"step": 250, "split": "valid", metric: 2.5},
        {"step": 500, "split": "valid", metric: 2.0},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def _eval_file(run, value, *, split="valid", protocol="windows", task="ptb_char", step=500, **kw):
    metric = "bpc" if task == "ptb_char" else "nats"
    record = {
        "task": task,
        "split": split,
        "protocol": protocol,
        "step": step,
        "max_batches": None,
        "metrics": {"loss": value, metric: value},
        **kw,
    }
    (run / runs.eval_filename(task, split, protocol)).write_text(json.dumps(record))


@pytest.fixture
def ptb_runs(tmp_path):
    lstm = _run(tmp_path, "lstm", variant="lstm", hidden=1000, s_per_epoch=100.0)
    norm = _run(tmp_path, "np_small", variant="normprop", hidden=128, s_per_epoch=110.0)
    ln = _run(tmp_path, "ln", variant="layernorm", hidden=1000, s_per_epoch=140.0, gamma_x=0.5)
    _eval_file(lstm, 1.50)
    _eval_file(norm, 1.60)
    _eval_file(ln, 1.45, max_batches=None)
    return lstm, norm, ln


def test_median_s_per_epoch_ignores_the_compile_line(ptb_runs):
    records = runs.read_metrics(ptb_runs[0])
    assert runs.median_s_per_epoch(records) == pytest.approx(
        100.0 * 1.03
    )  # median of 101..104 and 1000
    assert runs.median_s_per_epoch([{"split": "valid", "bpc": 1.0}]) is None


def test_table1_rows_ratio_and_labels(ptb_runs):
    lstm, norm, ln = ptb_runs
    rows = reports.table_rows(1, [norm, lstm, ln])
    assert [r.model for r in rows] == [
        "Baseline",
        "Weight Norm",
        "Batch Norm",
        "Layer Norm",
        "Norm Prop",
    ]
    by = {r.model: r for r in rows}
    assert by["Baseline"].ours == 1.50 and by["Baseline"].paper == 1.455
    assert by["Baseline"].ratio == pytest.approx(1.0)
    assert by["Norm Prop"].ratio == pytest.approx(1.10)
    assert by["Layer Norm"].ratio == pytest.approx(1.40)
    assert by["Norm Prop"].paper_ratio == 1.07 and by["Norm Prop"].paper_s_per_epoch == 413.0
    assert by["Weight Norm"].ours is None and by["Weight Norm"].run == ""
    # The small config is labelled as such; the paper-size run is not.
    assert "small config (paper: H=1000)" in by["Norm Prop"].config
    assert "H=128" in by["Norm Prop"].config and "500 updates" in by["Norm Prop"].config
    assert "small config" not in by["Baseline"].config
    assert "gammas (0.5, 1, 1)" in by["Layer Norm"].config


def test_table1_markdown(ptb_runs):
    text = reports.assemble_table(1, list(ptb_runs))
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 5
    norm = next(line for line in lines if line.startswith("| Norm Prop |"))
    cells = [c.strip() for c in norm.strip("|").split("|")]
    assert cells[2:] == ["1.422", "1.600", "413", "113.3", "1.07", "1.10"]
    assert "small config" in cells[1] and "`np_small`" in cells[1]
    assert "Laurent et al. (2017)" in text


def test_table1_s_per_epoch_from_quiet_step_times(ptb_runs):
    lstm, norm, _ = ptb_runs
    per_epoch = runs.steps_per_epoch(runs.read_metrics(lstm))
    step_times = {
        "env": {"date": "2026-12-02"},
        "flags": {"optimizer": "adam"},
        "results": [  # (H, D, B, T); ptb_runs: batch 32, length-100 windows
            {"size": [1000, 50, 32, 100], "model": "lstm", "mode": "train", "median_ms": 200.0},
            {"size": [1000, 50, 32, 100], "model": "lstm", "mode": "infer", "median_ms": 1.0},
            {"size": [128, 50, 32, 100], "model": "normprop", "mode": "train", "median_ms": 30.0},
        ],
    }
    rows = {r.variant: r for r in reports.table_rows(1, list(ptb_runs), step_times=step_times)}
    assert rows["lstm"].s_per_epoch == pytest.approx(0.2 * per_epoch)
    assert rows["normprop"].s_per_epoch == pytest.approx(0.03 * per_epoch)
    assert rows["normprop"].ratio == pytest.approx(0.15)
    assert rows["layernorm"].s_per_epoch is None  # not timed
    text = reports.assemble_table(1, [lstm, norm], step_times=step_times)
    assert "step_time.py` (optimizer: adam), timed in one process on 2026-12-02" in text


def test_table1_without_lstm_and_with_fallbacks(tmp_path):
    fallback = _run(tmp_path, "np_noeval", variant="normprop", hidden=128)  # no eval file
    partial = _run(tmp_path, "np_partial", variant="normprop", hidden=128)
    _eval_file(partial, 1.7, max_batches=3)
    rows = [r for r in reports.table_rows(1, [fallback, partial]) if r.variant]
    assert [r.ours for r in rows] == [2.0, 1.7]  # the last validation line of metrics.jsonl
    assert "training-time validation" in rows[0].note
    assert "first 3 batches" in rows[1].note
    assert all(r.ratio is None for r in rows)
    assert "no lstm run" in reports.format_table(1, reports.table_rows(1, [partial]))


def _seed_runs(tmp_path, values, *, row="np_row", **model):
    """Runs of one config differing only in the seed, each with an evaluation file."""
    out = []
    for seed, value in enumerate(values):
        (tmp_path / row).mkdir(exist_ok=True)
        run = _run(tmp_path / row, f"seed{seed}", variant="normprop", hidden=128, **model)
        config = json.loads((run / "config.json").read_text())
        config["seed"] = seed
        (run / "config.json").write_text(json.dumps(config))
        _eval_file(run, value)
        out.append(run)
    return out


def test_seeds_of_one_config_are_one_row_with_mean_std_and_n(tmp_path):
    seeds = _seed_runs(tmp_path, [1.5, 1.6, 1.7])
    other = _seed_runs(tmp_path, [1.4, 1.45], row="np_critical", gamma_init="critical")
    rows = [r for r in reports.table_rows(1, seeds + other, evaluate=False) if r.variant]
    assert len(rows) == 2
    first, second = rows
    assert first.n == 3 and first.ours == pytest.approx(1.6)
    assert first.ours_std == pytest.approx(0.1)  # the sample standard deviation
    assert first.config.startswith("`np_row` (3 runs): ")
    assert first.run == ", ".join(str(run) for run in seeds)
    assert second.n == 2 and second.ours == pytest.approx(1.425) and "critical" in second.config
    text = reports.format_table(1, rows)
    assert "| 1.600 ± 0.100 (n=3) |" in text and "| 1.425 ± 0.035 (n=2) |" in text
    assert "np_critical` (2 runs)" in text
    # 1.425 +- 0.035 (n=2) against 1.6 +- 0.1 (n=3): a gap of 0.175 > 2 SE = 0.13.
    assert reports.ranking(rows) == "Norm Prop [np_critical] < Norm Prop [np_row]"
    close = _seed_runs(tmp_path, [1.55, 1.75], row="np_close", gamma_init="critical", gamma_x=1.0)
    rows = [r for r in reports.table_rows(1, seeds + close, evaluate=False) if r.variant]
    assert reports.ranking(rows) == "Norm Prop [np_row] ≈ Norm Prop [np_close]"
    assert "≈" in reports.format_table(1, rows)
    assert reports.rankings_past_neighbours(rows) == []
    # A noisy row between two precise ones: the chain says ≈ twice, but the outer two differ by
    # 0.30, far above 2 SE = 0.016 (the middle row: 1.55 +- 0.35, n=2).
    low = _seed_runs(tmp_path, [1.40, 1.41, 1.42], row="np_low", gamma_x=0.5)
    wide = _seed_runs(tmp_path, [1.3, 1.8], row="np_wide", gamma_x=1.0)
    high = _seed_runs(tmp_path, [1.70, 1.71, 1.72], row="np_high", gamma_x=3.0)
    rows = [r for r in reports.table_rows(1, low + wide + high, evaluate=False) if r.variant]
    chain = "Norm Prop [np_low] ≈ Norm Prop [np_wide] ≈ Norm Prop [np_high]"
    assert reports.ranking(rows) == chain
    assert reports.rankings_past_neighbours(rows) == ["Norm Prop [np_low] < Norm Prop [np_high]"]
    assert "own gap exceeds two standard errors: Norm Prop [np_low] < Norm Prop [np_high]." in (
        reports.format_table(1, rows)
    )
    single = reports.table_rows(1, seeds[:1], evaluate=False)
    norm = next(r for r in single if r.variant)
    assert norm.n == 1 and norm.ours_std is None and "| 1.500 |" in reports.format_table(1, single)


def test_learning_curves_group_seeds_into_one_band(tmp_path):
    seeds = _seed_runs(tmp_path, [1.5, 1.6, 1.7])
    # How a seed was run is not what it trained: a config.json from before train.replicas
    # existed, and one seed of 2 run in processes, stay in the row.
    for seed, drop in ((seeds[0], True), (seeds[1], False)):
        config = json.loads((seed / "config.json").read_text())
        if drop:
            del config["train"]["replicas"]
        else:
            config["train"].update(replicas="processes", num_seeds=2)
        (seed / "config.json").write_text(json.dumps(config))
    other = _run(tmp_path, "lstm", variant="lstm")
    groups = plots._group_runs([*seeds, other])
    assert [len(members) for _, members in groups] == [3, 1]
    out = plots.plot_learning_curves([*seeds, other], tmp_path / "bands.png")
    assert out.exists() and out.stat().st_size > 5000


def test_stale_eval_file_is_not_used_without_a_checkpoint_to_replace_it(tmp_path):
    run = _run(tmp_path, "run", variant="lstm")
    _eval_file(run, 1.9, step=100)
    (run / "checkpoints" / "500").mkdir(parents=True)
    assert runs.latest_checkpoint_step(run) == 500
    # Without evaluation allowed the stored (older) record is used.
    record = evaluation.stored_or_evaluate(run, "valid", "windows", evaluate=False)
    assert record["step"] == 100


def test_table2_and_table3(tmp_path):
    np_run = _run(tmp_path, "np_drop", variant="normprop", hidden=1000)
    _eval_file(np_run, 1.30, split="test", protocol="stream")
    rows = reports.table_rows(2, [np_run])
    assert len(rows) == 6
    assert rows[-1].model == "Norm Prop LSTM" and rows[-1].ours == 1.30 and rows[-1].paper == 1.262
    assert "not Table 2's regularization" in rows[-1].config

    draw = _run(tmp_path, "draw_small", task="draw", variant="normprop", hidden=64, glimpses=16)
    bn = _run(tmp_path, "draw_bn", task="draw", variant="batchnorm", hidden=256)
    _eval_file(draw, 95.0, split="test", protocol=None, task="draw")
    _eval_file(bn, 90.0, split="test", protocol=None, task="draw")
    rows = reports.table_rows(3, [draw, bn])
    by = {r.model: r for r in rows}
    assert by["Norm Prop"].ours == 95.0 and by["Norm Prop"].paper == 81.17
    assert "small config (paper: H=256)" in by["Norm Prop"].config
    assert "T=16 (paper: 64)" in by["Norm Prop"].config
    assert by["Batch Norm"].paper is None and by["Batch Norm"].ours == 90.0
    assert "| 81.17 | 95.00 |" in reports.format_table(3, rows)
    with pytest.raises(ValueError, match="Table 3 needs task 'draw'"):
        reports.table_rows(3, [np_run])


def test_eval_filenames():
    assert runs.eval_filename("ptb_char", "valid", "windows") == "eval_valid_windows.json"
    assert runs.eval_filename("text8", "test", "stream") == "eval_test_stream.json"
    assert runs.eval_filename("draw", "test", "windows") == "eval_test.json"
    with pytest.raises(ValueError, match="protocol"):
        runs.eval_filename("ptb_char", "test", "full")


def test_format_record():
    """What eval.py --workdir prints: the metrics but the count, the sample, the files written."""
    record = {
        "task": "ptb_char",
        "variant": "normprop",
        "split": "valid",
        "protocol": "windows",
        "step": 500,
        "max_batches": 3,
        "metrics": {"loss": 1.0, "bpc": 1.5, "count": 10.0},
        "sample": "abc",
        "path": "RUN/eval_valid_windows.json",
    }
    assert evaluation.format_record(record).splitlines() == [
        "ptb_char normprop step 500: valid (windows), first 3 batches: {'loss': 1.0, 'bpc': 1.5}",
        "sample:",
        "abc",
        "wrote RUN/eval_valid_windows.json",
    ]
    draw = dict(record, task="draw", protocol=None, max_batches=None, images=["a.png"])
    del draw["sample"]
    assert evaluation.format_record(draw).splitlines()[0] == (
        "draw normprop step 500: valid: {'loss': 1.0, 'bpc': 1.5}"
    )
    assert evaluation.format_record(draw).splitlines()[1:] == [
        "wrote a.png",
        "wrote RUN/eval_valid_windows.json",
    ]


def test_resolve_runs(ptb_runs, tmp_path):
    found = runs.resolve_runs(",".join(str(r) for r in ptb_runs[:2]), str(tmp_path / "*"))
    assert found[:2] == list(ptb_runs[:2]) and len(found) == 3
    with pytest.raises(FileNotFoundError):
        runs.resolve_runs(str(tmp_path / "nope"))


# ----------------------------------------------------------------------------------------------
# Figures and images.


def test_learning_curves_png(ptb_runs, tmp_path):
    out = plots.plot_learning_curves(list(ptb_runs), tmp_path / "fig" / "figure2.png")
    assert out.exists() and out.stat().st_size > 5000
    with pytest.raises(ValueError, match="nats"):
        plots.plot_learning_curves(list(ptb_runs), tmp_path / "x.png", metric="nats")


def test_draw_images(tmp_path):
    canvases = np.random.default_rng(0).uniform(size=(5, 6, 784)).astype(np.float32)
    paths = plots.save_draw_images(canvases, tmp_path)
    assert [p.name for p in paths] == ["draw_samples.png", "draw_glimpses.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def _eval_py(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), *flags],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


def test_eval_main_table(ptb_runs, tmp_path):
    out, png = tmp_path / "table1.md", tmp_path / "width.png"
    runs_flag = "--runs=" + ",".join(str(r) for r in ptb_runs)
    result = _eval_py("--table=1", "--no_eval", f"--out={out}", runs_flag)
    assert result.returncode == 0, result.stderr
    assert "| Norm Prop |" in result.stdout and out.read_text().count("\n|") >= 6
    width = _eval_py("--figure=width", "--no_eval", f"--out={png}", runs_flag)
    assert width.returncode == 0, width.stderr
    assert "| Row | H=128 | H=1000 | paper, H=1000 |" in width.stdout and png.exists()
    bad = _eval_py("--table=1", "--figure=2")
    assert bad.returncode != 0 and "exactly one" in bad.stderr


def _sweep_run(root, row, lr, seed, value, *, hidden=128, s_per_epoch=100.0, **model):
    """A seed run of a learning-rate sweep, ``root/row/lr<lr>/seed<seed>``, evaluated at
    ``value``."""
    root = root / row / f"lr{lr:g}"
    root.mkdir(parents=True, exist_ok=True)
    variant = model.pop("variant", "normprop")
    run = _run(root, f"seed{seed}", variant=variant, hidden=hidden, s_per_epoch=s_per_epoch)
    config = json.loads((run / "config.json").read_text())
    config["seed"], config["opt"]["learning_rate"] = seed, lr
    config["model"].update(model)
    (run / "config.json").write_text(json.dumps(config))
    _eval_file(run, value)
    return run


def test_learning_rate_sweep_picks_each_rows_best_rate_and_flags_edges(tmp_path):
    """Runs that differ in the learning rate alone are one row of the sweep; the tuned table
    takes the runs at each row's best rate (all its seeds)."""

    def sweep_run(row, lr, seed, value, **model):
        return _sweep_run(tmp_path, row, lr, seed, value, **model)

    norm = [sweep_run("np", 1e-3, 0, 1.9), sweep_run("np", 2e-3, 0, 1.8)]
    norm += [sweep_run("np", 4e-3, s, v) for s, v in enumerate((1.7, 1.72, 1.74))]
    ln = [sweep_run("ln", lr, 0, v, variant="layernorm") for lr, v in ((1e-3, 1.8), (4e-3, 1.9))]
    text = reports.learning_rate_sweep(norm + ln, evaluate=False)
    sweep, tuned = text.split("Table 1 at each row's best rate:")
    assert "| lr 0.001 | lr 0.002 | lr 0.004 | best |" in sweep
    assert "| 1.900 | 1.800 | **1.720 ± 0.020 (n=3)** | 0.004 |" in sweep
    assert "| **1.800** | — | 1.900 | 0.001 |" in sweep
    assert "Norm Prop (best 0.004, tried 0.001-0.004)" in sweep  # both at an edge
    assert "Layer Norm (best 0.001, tried 0.001-0.004)" in sweep
    assert "1.720 ± 0.020 (n=3)" in tuned and "`np/lr0.004` (3 runs)" in tuned
    assert "lr 0.004 (paper: 0.002)" in tuned and "`ln/lr0.001`" in tuned
    assert "1.900" not in tuned  # the other rates are not in the tuned table


def test_width_series_table_and_figure(tmp_path):
    """Runs that differ in width, learning rate and seed are one row; at each width the best
    rate; normprop's gaps carry the standard error of the difference."""
    runs_ = []
    for hidden, lr_np, lr_ln in ((128, 8e-3, 1.6e-2), (256, 8e-3, 1.6e-2)):
        h_dir = tmp_path / f"h{hidden}"
        for seed, (v_np, v_ln, v_lstm) in enumerate(((1.73, 1.72, 1.76), (1.74, 1.74, 1.78))):
            v_np, v_ln, v_lstm = (v - (hidden - 128) / 1280 for v in (v_np, v_ln, v_lstm))
            runs_.append(_sweep_run(h_dir, "np", lr_np, seed, v_np, hidden=hidden, s_per_epoch=60))
            runs_.append(_sweep_run(h_dir, "np", 2e-3, seed, 1.9, hidden=hidden, s_per_epoch=60))
            runs_.append(
                _sweep_run(h_dir, "ln", lr_ln, seed, v_ln, hidden=hidden, variant="layernorm")
            )
            runs_.append(
                _sweep_run(h_dir, "lstm", 2e-3, seed, v_lstm, hidden=hidden, variant="lstm",
                           s_per_epoch=50)
            )  # fmt: skip
    series = reports.width_series(runs_, evaluate=False)
    assert [s.name for s in series] == ["Baseline", "Layer Norm", "Norm Prop (paper form)"]
    by_name = {s.name: s for s in series}
    norm = by_name["Norm Prop (paper form)"]
    assert sorted(norm.rows) == [128, 256] and norm.rates == {128: 8e-3, 256: 8e-3}
    assert norm.rows[256].n == 2 and math.isclose(norm.rows[256].ours, 1.635)
    text = reports.width_table(series)
    assert "| Norm Prop (paper form) | 1.735 ± 0.007 (n=2), lr 0.008 | 1.635 ± 0.007 (n=2)" in text
    assert "| 1.422 |" in text  # the paper's H = 1000 number
    assert "| Norm Prop (paper form) | 1.20 | 1.20 |" in text  # time relative to lstm
    # gap +0.005, standard error sqrt(0.0071^2 / 2 + 0.0141^2 / 2) = 0.011
    assert "| Norm Prop (paper form) − Layer Norm | +0.005 ± 0.011 (within 2 SE) |" in text
    out = plots.plot_width(series, tmp_path / "width.png")
    assert out.exists() and out.stat().st_size > 5000
    with pytest.raises(ValueError, match="no runs"):
        plots.plot_width([], tmp_path / "none.png")
