"""PNG plots for ``compare`` (curves with s.e. bands) and ``tournament`` (win-rate heatmap)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

from prefzoo.envs.metrics import METRICS, PLOT_METRICS, QUERIES, WALL_S  # noqa: E402
from prefzoo.zoo.rundir import value_at  # noqa: E402

GRID = 200


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Lay ``fig`` out, write it to ``path`` (its folder made) and close it; returns the path."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _band(ax, x, curves, label, color, floor: float = 1e-12):
    """Mean over seeds with a shaded ±1 s.e. band (columns where every seed is defined), clipped
    below at ``floor`` (a log axis; -inf: none)."""
    curves = np.asarray(curves)
    ok = np.isfinite(curves).all(axis=0)
    if not ok.any():
        return
    mean = curves[:, ok].mean(axis=0)
    se = curves[:, ok].std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
    ax.plot(x[ok], np.maximum(mean, floor), label=f"{label} (n={len(curves)})", color=color, lw=1.8)
    ax.fill_between(x[ok], np.maximum(mean - se, floor), np.maximum(mean + se, floor), color=color, alpha=0.25, lw=0)


def _log_y(ax) -> None:
    """Log y axis whose ticks are labelled even when the data span less than a decade."""
    ax.set_yscale("log")
    label = ticker.FuncFormatter(lambda v, _: f"{v:.3g}")
    ax.yaxis.set_major_formatter(label)
    low, high = ax.get_ylim()
    if high / low < 30:
        ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2, 3, 5)))
        ax.yaxis.set_minor_formatter(label)


def _figure(runs, xkey, xlabel, grid_for, path: Path, title: str) -> Path | None:
    shown = [m for m in PLOT_METRICS if any(m in a for arrays in runs.values() for a in arrays)]
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(5.6 * len(shown), 4.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], shown):
        for i, (algo, arrays) in enumerate(runs.items()):
            have = [a for a in arrays if metric in a and np.isfinite(a[metric]).any()]
            if not have:
                continue
            x = grid_for(have)
            _band(ax, x, [value_at(a[xkey], a[metric], x) for a in have], algo, colors[i % len(colors)],
                  1e-12 if METRICS[metric].log_axis else -np.inf)
        if METRICS[metric].log_axis:
            _log_y(ax)
        if xkey == QUERIES:
            ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))  # 50k, 100k, 1M
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRICS[metric].label)
        ax.set_title(metric)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no algorithm reports it", ha="center", transform=ax.transAxes)
    fig.suptitle(f"{title}  (mean ± s.e. over seeds)")
    return save_figure(fig, path)


def comparison_plots(runs: dict[str, list[dict[str, np.ndarray]]], budget: float, out: Path, title: str) -> list[Path]:
    """``vs_queries.png`` (grid 0..budget) and ``vs_wall_time.png`` (grid 0..the shortest seed's
    wall time, per algorithm); one panel per metric, one line per algorithm."""
    def query_grid(_):
        return np.linspace(0, budget, GRID)

    def wall_grid(arrays):
        return np.linspace(0, min(np.nanmax(a[WALL_S]) for a in arrays), GRID)

    paths = [_figure(runs, QUERIES, "oracle queries", query_grid, out / "vs_queries.png", title),
             _figure(runs, WALL_S, "wall time of the training steps (s)", wall_grid, out / "vs_wall_time.png", title)]
    return [p for p in paths if p is not None]


def heatmap(matrix: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    """Win-rate matrix: row player's win rate against the column player (exact or estimated)."""
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.6 * n))
    spread = max(float(np.abs(matrix - 0.5).max()), 0.01)  # colour range symmetric about ½
    image = ax.imshow(matrix, cmap="RdBu", vmin=0.5 - spread, vmax=0.5 + spread)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("column player")
    ax.set_ylabel("row player")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(matrix[i, j] - 0.5) > 0.6 * spread else "black")
    fig.colorbar(image, ax=ax, label="P(row ≻ column)")
    ax.set_title(title)
    return save_figure(fig, path)
