"""``prefzoo estimators``: quality table and bias plot of the log-reward estimator tables.

For each estimator of :mod:`prefzoo.envs.estimators` at one K: the p-weighted sup bias
sup_p p·|E_p g − log p|, the raw bias at p = 1/K and the worst-case standard deviation, all exact
(binomial sums); a markdown table on stdout and in ``<out>/estimators_K<K>.md``, and a PNG of
p·bias(p) against p (log x) in ``<out>/estimators_K<K>.png``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from prefzoo.envs import estimators
from prefzoo.zoo.config import int_at_least


def quality_rows(K: int, names=estimators.LOG_ESTIMATORS) -> list[dict]:
    """One row per estimator: name, p-weighted sup bias, bias at p = 1/K, worst sd."""
    rows = []
    for name in names:
        with warnings.catch_warnings():  # the float64 minimax table is reported as is
            warnings.simplefilter("ignore", RuntimeWarning)
            g = estimators.table(name, K)
        rows.append({"estimator": name, "p_weighted_sup_bias": estimators.p_weighted_sup_bias(g),
                     "bias_at_1_over_K": float(estimators.bias(g, 1.0 / K)),
                     "worst_sd": estimators.worst_sd(g)})
    return rows


def markdown(rows: list[dict], K: int) -> str:
    lines = [f"| estimator (K={K}) | p-weighted sup bias | bias at p=1/K | worst sd |", "|---|---|---|---|"]
    lines += [f"| {r['estimator']} | {r['p_weighted_sup_bias']:.3g} | {r['bias_at_1_over_K']:+.3g} "
              f"| {r['worst_sd']:.3g} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot(K: int, path: Path, names=estimators.LOG_ESTIMATORS) -> None:
    """p·bias(p) against p on a log-x axis (symlog y: the tables differ by orders of magnitude)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.geomspace(1e-3 / K**2, 1.0, 2000)
    e_star = estimators.minimax_value(K)
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            g = estimators.table(name, K)
        ax.plot(p, p * estimators.bias(g, p), label=name, lw=1.5)
    for sign in (1, -1):
        ax.axhline(sign * e_star, color="grey", ls=":", lw=1)
    ax.axvline(1.0 / K, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=10.0 ** np.floor(np.log10(e_star / 4)))
    ax.set_xlabel("p (probability of the rollout's answer)")
    ax.set_ylabel("p · bias(p)   [symlog]")
    ax.set_title(f"p-weighted bias of log-reward tables, K = {K} (dotted: ±E*_K, dashed: p = 1/K)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_estimators(args: argparse.Namespace) -> None:
    """Print the estimator quality table at ``--K`` and write it with the bias plot to ``--out``."""
    K = args.K
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table_md = markdown(quality_rows(K), K)
    print(table_md)
    (out / f"estimators_K{K}.md").write_text(table_md)
    png = out / f"estimators_K{K}.png"
    plot(K, png)
    print(f"wrote {out / f'estimators_K{K}.md'} and {png}")


def add_parser(sub) -> None:
    """Register ``estimators`` on the ``prefzoo`` subparsers."""
    p = sub.add_parser("estimators", help="bias/sd table and bias plot of the log-reward estimators")
    p.add_argument("--K", type=int_at_least(2), default=32, help="rollouts per prompt (default 32)")
    p.add_argument("--out", default="results/estimators", help="output folder for the table and PNG")
