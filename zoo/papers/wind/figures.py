"""The plots of the WIND reproduction, each drawn from the numbers of :mod:`.experiments` (matplotlib,
imported lazily; the caller picks the backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prefzoo.zoo.papers.wind.experiments import BT, CYCLIC, FIG2_ALGOS, PAYOFFS, THM1_TOL


def _save(fig, path: Path, title: str | None = None) -> Path:
    """Give ``fig`` its ``title`` (10 pt), lay it out, write it to ``path`` and close it."""
    import matplotlib.pyplot as plt

    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_theorem1(t1: dict, path: Path) -> Path:
    """Exploitability e_β(π_t) of the exact BoN iterates, one line per case of ``theorem1``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5))
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, (label, values) in enumerate(t1["traces"].items()):
        below = np.flatnonzero(values < 1e-15)  # stop each trace at the rounding floor
        shown = np.maximum(values[: below[0] + 1] if len(below) else values, 1e-15)
        ax.plot(np.arange(1, len(shown) + 1), shown, lw=1.5, label=label, color=colors[(2 * i) % 20 + (i >= 10)],
                ls="--" if "no mixing" in label or "β=0.05" in label else "-")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(THM1_TOL, color="k", lw=0.8, ls=":")
    ax.text(1.2, THM1_TOL * 2, f"{THM1_TOL:g}", fontsize=8)
    ax.set_xlabel("iteration t of exact iterative BoN")
    ax.set_ylabel("log-win-rate exploitability e_β(π_t)  (cut at 1e-15)")
    ax.set_title("Theorem 1: iterative BoN solves the log-win-rate game\n(uniform tie-break win rate; "
                 "dashed: outside the theorem's conditions or no mixing; lines that stay high have no limit)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_figure1a(f1a: dict, path: Path) -> Path:
    """KL(π̄*_0 ‖ π_t) on the transitive game and exploitability on the cyclic one, per method."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel, ylabel, title in (
            (axes[0], "curves", "KL(π̄*_0 ‖ π_t)", f"(a) no mixing, transitive game ({BT})"),
            (axes[1], "cyclic", "exploitability  max_y P(y≻π_t) − ½", f"failure case: intransitive game ({CYCLIC})")):
        for i, (label, values) in enumerate(f1a[panel].items()):
            ax.plot(np.arange(1, len(values) + 1), np.maximum(values, 1e-16), label=label, color=colors[i],
                    ls="-" if "BoN" in label else "--", lw=1.7)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, "Figure 1(a): iterative BoN without mixing and exact WIND (β = 0), distance to π̄*_0 "
                            "(Condorcet winner)")


def plot_figure1b(f1b: dict, path: Path) -> Path:
    """KL(π̄*_β ‖ π*_β) and win rates against β, WIND's π*_β under each payoff convention."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = dict(zip(PAYOFFS, ("^--", "s:"), strict=True))
    for j, env_id in enumerate((BT, CYCLIC)):
        sub = [r for r in f1b["rows"] if r["env"] == env_id]
        name = env_id.split("/")[1]
        b = [r["beta"] for r in sub]
        for conv, style in styles.items():
            axes[0].plot(b, [r["payoffs"][conv]["kl"] for r in sub], style, color=colors[j],
                         label=f"KL(π̄*_β ‖ π*_β), payoff {conv}  {name}")
            axes[1].plot(b, [r["payoffs"][conv]["win"] for r in sub], style, color=colors[j], alpha=0.8,
                         label=f"π*_β (WIND), payoff {conv}  {name}")
        axes[0].plot(b, [r["payoffs"]["P"]["kl_ref"] for r in sub], "-", color=colors[j], alpha=0.35,
                     label=f"KL(π*_β ‖ π_ref), payoff P  {name} (scale)")
        axes[1].plot(b, [r["win_bon"] for r in sub], "o-", color=colors[j], label=f"π̄*_β (iterative BoN)  {name}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("KL, ρ-weighted")
    axes[0].set_title("distance between the two equilibria", fontsize=10)
    axes[1].set_ylabel("win rate against π_ref")
    axes[1].set_title("win rate of each equilibrium against π_ref", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("β  (BoN: N = 2, α = β/(1+β))")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    return _save(fig, path, "Figure 1(b): with mixing, the log-win-rate equilibrium π̄*_β and WIND's π*_β "
                            "(payoff P: game.nash(β); margin payoff 2P−1: game.nash(β/2))")


def plot_figure2(f2: dict, path: Path) -> Path:
    """Wall time and oracle queries to each target, mean ± s.e. over seeds, per algorithm."""
    import matplotlib.pyplot as plt

    targets, summary = f2["targets"], f2["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / len(targets)
    for ax, key, ylabel in ((axes[0], "wall_s", "wall time to target (s, training steps)"),
                            (axes[1], "queries", "oracle queries to target")):
        for i, algo in enumerate(FIG2_ALGOS):
            for k in range(len(targets)):
                m, x = summary[algo][k], i + (k - (len(targets) - 1) / 2) * width
                if m["reached"]:
                    ax.bar(x, m[key], width * 0.95, yerr=m[key + "_se"], color=colors[i], capsize=4,
                           alpha=0.45 + 0.55 * (k + 1) / len(targets), hatch="" if k == len(targets) - 1 else "//")
                    note = "" if m["reached"] == m["runs"] else f"\n{m['reached']}/{m['runs']}"
                    ax.text(x, m[key] + m[key + "_se"], f"{m[key]:.2g}{note}", ha="center", va="bottom", fontsize=7)
                else:
                    ax.text(x, 0, "not\nreached", ha="center", va="bottom", fontsize=7, color="red")
        ax.set_xticks(range(len(FIG2_ALGOS)), FIG2_ALGOS)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        ax.margins(y=0.2)
    labels = " / ".join(f"{t:.4f}" for t in targets)
    return _save(fig, path, f"Figure 2: cost to reach win rate vs π_ref ≥ {labels} (hatched / solid) on {BT}\n"
                            f"mean ± s.e. over {len(f2['seeds'])} seeds, sample mode, budget {f2['budget']:,} queries")


def plot_all(numbers: dict, out: Path) -> list[Path]:
    """Every PNG of the reproduction into ``out``: theorem1, fig1a, fig1b, fig2."""
    return [plot_theorem1(numbers["theorem1"], out / "theorem1.png"),
            plot_figure1a(numbers["figure1a"], out / "fig1a.png"),
            plot_figure1b(numbers["figure1b"], out / "fig1b.png"),
            plot_figure2(numbers["figure2"], out / "fig2.png")]
