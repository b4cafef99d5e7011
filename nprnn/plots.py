"""The paper's figures and DRAW images as PNGs; imports nprnn (VARIANTS), nprnn.paper, nprnn.runs.

* :func:`plot_figure1`: heatmaps of a :func:`nprnn.gradient_flow.figure1_study` (Figure 1,
  gradient flow at initialization against ``gamma_x`` and ``gamma_h``).
* :func:`plot_learning_curves`: Figures 2 and 3, training (dashed) and validation (solid)
  curves against updates, from ``metrics.jsonl``.
* :func:`plot_width`: validation bpc against the width H, with the paper's H = 1000 numbers
  (issue 19's width series).
* :func:`save_draw_images`: DRAW samples and their canvas over the glimpses.

matplotlib is imported inside each function (an optional dependency, with the ``Agg`` backend).

References:
  C. Laurent, N. Ballas, P. Vincent. Recurrent Normalization Propagation. ICLR 2017 workshop
  track: Figure 1, Figure 2, Figure 3.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np

import nprnn
from nprnn.paper import FIGURE1_POINTS, PAPER_SETTINGS, PAPER_TABLE1, VARIANT_NAMES
from nprnn.runs import CHAR_TASKS, config_key, read_config, read_metrics

__all__ = ["plot_figure1", "plot_learning_curves", "plot_width", "save_draw_images"]


def _pyplot():
    """matplotlib.pyplot with the non-interactive ``Agg`` backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_with_legend(plt, fig, ax, out: str | os.PathLike) -> pathlib.Path:
    """The legend right of the axes, then ``fig`` written to ``out`` (its folder made) and
    closed."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------
# Figure 1.

_TITLES = {
    "one_step_rms": "one-step ||dh_t/dh_{t-1}||_F / sqrt(H)",
    "one_step_spectral": "one-step spectral norm ||dh_t/dh_{t-1}||_2",
    "growth": "gradient growth per step (T = <T>, geometric mean)",
    "growth_state": "gradient growth per step, whole state (T = <T>)",
    "var_h": "stationary Var[h_t]",
}


def plot_figure1(
    study: dict,
    out_dir: str | pathlib.Path,
    metrics: Sequence[str] = ("one_step_rms", "one_step_spectral", "growth", "var_h"),
) -> list[pathlib.Path]:
    """Figure 1: heatmaps of a study, one PNG per metric, one panel per gamma_c.

    Log colour scale centred on 1 (a diverging map: red above 1, blue below), gamma_x on the
    x-axis and gamma_h on the y-axis (both logarithmic), a black contour where the value is 1,
    and markers at the paper's gammas whose gamma_c matches the panel.

    Args:
      study: from :func:`nprnn.gradient_flow.figure1_study`.
      out_dir: directory for ``figure1_<metric>.png`` (created if needed).
      metrics: which metrics to draw.

    Returns:
      The paths written.
    """
    plt = _pyplot()
    import matplotlib.colors as mcolors

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gx, gh = study["gamma_x"], study["gamma_h"]
    steps = study.get("config", {}).get("steps", "?")
    form = study.get("config", {}).get("compensation", "paper")
    form = "released form" if form == "released" else "eq. 15"
    paths = []
    for metric in metrics:
        values = np.asarray(study[metric])
        finite = values[np.isfinite(values) & (values > 0)]
        span = float(np.max(np.abs(np.log10(finite)))) if finite.size else 1.0
        span = max(span, 0.05)
        norm = mcolors.LogNorm(vmin=10**-span, vmax=10**span)
        ncol = len(study["gamma_c"])
        fig, axes = plt.subplots(
            1, ncol, figsize=(5.0 * ncol + 1.2, 4.6), squeeze=False, layout="constrained"
        )
        image = None
        for k, gc in enumerate(study["gamma_c"]):
            ax = axes[0, k]
            image = ax.pcolormesh(gx, gh, values[k], norm=norm, cmap="RdBu_r", shading="nearest")
            level = np.log(np.clip(values[k], 1e-300, None))
            if level.min() < 0 < level.max():
                ax.contour(gx, gh, level, levels=[0.0], colors="k", linewidths=1.5)
            for px, ph, pc, label in FIGURE1_POINTS:
                if math.isclose(pc, gc):
                    ax.plot(px, ph, marker="*", color="gold", markeredgecolor="k", markersize=14)
                    ax.annotate(
                        label, (px, ph), textcoords="offset points", xytext=(-8, 8), ha="right"
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("gamma_x")
            ax.set_ylabel("gamma_h")
            ax.set_title(f"gamma_c = {gc:g}")
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9)
        title = _TITLES.get(metric, metric).replace("<T>", str(steps))
        fig.suptitle(f"{title}, normprop {form} (contour: 1)")
        path = out_dir / f"figure1_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------
# Figures 2 and 3.


def _group_runs(runs: Sequence[str | os.PathLike]) -> list[tuple[dict, list]]:
    """Runs grouped into rows (seeds of one config), in the order of their first run."""
    groups: dict[str, tuple[dict, list]] = {}
    for run in runs:
        config = read_config(run)
        groups.setdefault(config_key(config), (config, []))[1].append(run)
    return list(groups.values())


def _replica_curves(records: list[dict], metric: str) -> list[dict[int, float]]:
    """``{step: value}`` curves of one run's records: one, or one per replica where the values
    are lists (``train.num_seeds > 1``)."""
    if not records:
        return [{}]
    width = max(len(r[metric]) if isinstance(r[metric], list) else 1 for r in records)
    return [
        {r["step"]: r[metric][k] if isinstance(r[metric], list) else r[metric] for r in records}
        for k in range(width)
    ]


def _mean_curve(curves: list[dict[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps that every curve has, and the mean and standard deviation across curves there."""
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    values = np.array([[c[s] for s in steps] for c in curves])
    std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))
    return np.array(steps), values.mean(axis=0), std


def plot_learning_curves(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    metric: str | None = None,
    title: str | None = None,
) -> pathlib.Path:
    """Figures 2 and 3: training (dashed) and validation (solid) curves against updates.

    Runs whose configs differ only in the seed are one row: its mean curve, with a band of one
    standard deviation across the seeds (the runs, and the replicas of a ``train.num_seeds`` run)
    and ``n`` in the label. One colour per variant (the same
    colour for a variant in every figure); a second row of a variant gets a colour of its own and
    its directory name in the label.

    Args:
      runs: run directories (with metrics.jsonl and config.json).
      out: the PNG to write.
      metric: ``"bpc"`` or ``"nats"``; None: from the first run's task.
      title: figure title.

    Returns:
      The path written.

    Raises:
      ValueError: when no run has a curve of ``metric``.
    """
    plt = _pyplot()
    palette = plt.get_cmap("tab10").colors
    colours = dict(zip(nprnn.VARIANTS, palette, strict=False))
    extra = iter(palette[len(nprnn.VARIANTS) :] * 4)  # further rows of a variant: colours 6-10
    seen: set[str] = set()
    fig, ax = plt.subplots(figsize=(11, 5.2))
    valid_max = []  # the y range follows the validation curves, not the first training losses
    drawn = 0
    groups = _group_runs(runs)
    variants = [config["model"]["variant"] for config, _ in groups]
    for config, members in groups:
        if metric is None:
            metric = "bpc" if config.get("task") in CHAR_TASKS else "nats"
        variant = config["model"]["variant"]
        name = f"{VARIANT_NAMES.get(variant, variant)} (H={config['model']['hidden_size']})"
        if variant == "normprop":  # which form produced the curve
            name += f", {config['model'].get('compensation', 'paper')} form"
        parents = {pathlib.Path(run).parent.name for run in members}
        where = parents.pop() if len(members) > 1 and len(parents) == 1 else None
        if variants.count(variant) > 1:
            name += f" [{where or pathlib.Path(members[0]).name}]"
        replicas = sum(read_config(run).get("train", {}).get("num_seeds", 1) for run in members)
        if replicas > 1:
            name += f", n={replicas}"
        colour = next(extra) if variant in seen else colours.get(variant, "k")
        seen.add(variant)
        records = [read_metrics(run) for run in members]
        for split, style in (("train", "--"), ("valid", "-")):
            curves = [
                curve
                for rs in records
                for curve in _replica_curves(
                    [r for r in rs if r.get("split") == split and metric in r], metric
                )
            ]
            if not curves or not all(curves):
                continue
            xs, mean, std = _mean_curve(curves)
            ax.plot(
                xs,
                mean,
                style,
                color=colour,
                alpha=0.6 if split == "train" else 1.0,
                marker="o" if split == "valid" and len(xs) < 30 else None,
                markersize=3,
                label=f"{name} {split}",
            )
            if len(curves) > 1:
                ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
            if split == "valid":
                valid_max.append(float(np.max(mean + std)))
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no run has a '{metric}' curve in its metrics.jsonl")
    ax.set_xlabel("updates")
    ax.set_ylabel({"bpc": "bits per character", "nats": "nats per image"}.get(metric, metric))
    ax.set_title(title or "learning curves (training dashed, validation solid)")
    ax.grid(alpha=0.3)
    if valid_max:
        ax.set_ylim(top=1.15 * max(valid_max))
    return _save_with_legend(plt, fig, ax, out)


# ----------------------------------------------------------------------------------------------
# The width series.


def plot_width(series, out: str | os.PathLike) -> pathlib.Path:
    """Validation bpc against the width H (log axis): one line per row of
    :func:`nprnn.reports.width_series`, ± one standard deviation over its seeds, and the paper's
    H = 1000 numbers (Table 1) as open markers in the colour of their variant's first row.

    Args:
      series: :class:`nprnn.reports.WidthSeries` (anything with ``name``, ``variant`` and
        ``rows``: ``{H: row}`` with ``ours``, ``ours_std`` and ``n``).
      out: the PNG to write.

    Returns:
      The path written.

    Raises:
      ValueError: when ``series`` is empty.
    """
    if not series:
        raise ValueError("no runs to plot: the width figure needs Table 1 runs (char-level PTB)")
    plt = _pyplot()
    palette = plt.get_cmap("tab10").colors
    colours = dict(zip(nprnn.VARIANTS, palette, strict=False))
    extra = iter(palette[len(nprnn.VARIANTS) :] * 4)
    seen: dict[str, tuple] = {}
    fig, ax = plt.subplots(figsize=(9, 5))
    widths = sorted({h for s in series for h in s.rows} | {PAPER_SETTINGS[1]["hidden_size"]})
    for s in series:
        colour = next(extra) if s.variant in seen else colours.get(s.variant, "k")
        seen.setdefault(s.variant, colour)
        hs = sorted(s.rows)
        mean = [s.rows[h].ours for h in hs]
        std = [s.rows[h].ours_std or 0.0 for h in hs]
        label = f"{s.name} (n={'/'.join(str(s.rows[h].n) for h in hs)})"
        ax.errorbar(hs, mean, yerr=std, color=colour, marker="o", capsize=3, label=label)
    for variant, colour in seen.items():
        if variant in PAPER_TABLE1:
            name, bpc = PAPER_TABLE1[variant][:2]
            ax.plot(
                PAPER_SETTINGS[1]["hidden_size"],
                bpc,
                marker="D",
                mfc="none",
                color=colour,
                linestyle="none",
                label=f"paper: {name}, H=1000",
            )
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(widths)
    ax.set_xticklabels([str(h) for h in widths])
    ax.set_xlabel("hidden units H (log scale)")
    ax.set_ylabel("validation bits per character")
    ax.set_title("Char-level PTB: validation bpc against width (ours ± std over seeds)")
    ax.grid(alpha=0.3)
    return _save_with_legend(plt, fig, ax, out)


# ----------------------------------------------------------------------------------------------
# DRAW images.


def save_draw_images(canvases, out_dir: str | os.PathLike, *, columns: int = 8) -> list:
    """PNGs of DRAW samples: a grid of the final images and the canvas over the glimpses.

    Args:
      canvases: [T, num, 784] canvas probabilities sigmoid(c_t) (``draw_sample``'s output).
      out_dir: directory for ``draw_samples.png`` and ``draw_glimpses.png``.
      columns: glimpses shown per sample in the second image (evenly spaced, the last included).

    Returns:
      The two paths.
    """
    plt = _pyplot()

    canvases = np.asarray(canvases, np.float32)
    steps, num, pixels = canvases.shape
    side = int(round(math.sqrt(pixels)))
    images = canvases.reshape(steps, num, side, side)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    ncol = int(math.ceil(math.sqrt(num)))
    nrow = int(math.ceil(num / ncol))
    grid = np.ones((nrow * (side + 2), ncol * (side + 2)), np.float32)
    for k in range(num):
        r0, c0 = (side + 2) * (k // ncol) + 1, (side + 2) * (k % ncol) + 1
        grid[r0 : r0 + side, c0 : c0 + side] = images[-1, k]
    fig, ax = plt.subplots(figsize=(ncol * 0.8 + 0.5, nrow * 0.8 + 0.5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"DRAW samples (after {steps} glimpses)", fontsize=9)
    samples_path = out_dir / "draw_samples.png"
    fig.savefig(samples_path, dpi=120, bbox_inches="tight")
    plt.close(fig)

    shown = min(num, 6)
    ts = np.unique(np.linspace(0, steps - 1, min(columns, steps)).round().astype(int))
    fig, axes = plt.subplots(
        shown, len(ts), figsize=(len(ts) * 0.9, shown * 0.9 + 0.4), squeeze=False
    )
    for i in range(shown):
        for j, t in enumerate(ts):
            ax = axes[i, j]
            ax.imshow(images[t, i], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t={t + 1}", fontsize=8)
    fig.suptitle("canvas sigmoid(c_t) over the glimpses", fontsize=9)
    glimpses_path = out_dir / "draw_glimpses.png"
    fig.savefig(glimpses_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [samples_path, glimpses_path]
