"""``prefzoo tournament``: round-robin exact win rates between saved policies of one game.

Players: each given run (its ``policy.npy``, or a checkpoint restored into a freshly built
algorithm), π_ref and the von Neumann winner ``game.nash(0)``. Entry (i, j) is
E_{x~ρ} P(π_i ≻ π_j | x) = ``game.expectation(game.win_rate(π_i, π_j))``; the matrix is
antisymmetric about ½ and the Nash row is ≥ ½ everywhere (up to the LP's tolerance).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import gymnasium as gym
import numpy as np

from prefzoo.algorithms.base import CheckpointError
from prefzoo.zoo import runner
from prefzoo.zoo.config import ConfigError, RunConfig


def load_policy(path: str | os.PathLike) -> tuple[RunConfig, np.ndarray, str]:
    """(config, policy [X, Y], label) of a run directory, a checkpoint ``.pt`` or a ``.npy``."""
    path = Path(path)
    if path.is_dir():
        run_dir, source = path, path / "policy.npy"
        if not source.is_file():  # a killed run: its latest checkpoint
            saved = runner.checkpoints(run_dir)
            if not saved:
                raise ConfigError(f"{run_dir} has neither policy.npy nor a checkpoint")
            source = saved[max(saved)]
    elif path.suffix in (".pt", ".npy") and path.is_file():
        run_dir, source = (path.parent.parent if path.suffix == ".pt" else path.parent), path
    else:
        raise ConfigError(f"{path}: expected a run directory, a checkpoint .pt or a policy .npy")
    cfg = runner.load_run_config(run_dir)
    if source.suffix == ".npy":
        try:
            pi = np.load(source, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ConfigError(f"{source} is not a policy array ({str(err).splitlines()[0]})") from None
        label = f"{cfg.algo}/s{cfg.seed}"
    else:
        try:
            algo = runner.build(cfg).load(source)
        except CheckpointError as err:
            raise ConfigError(str(err)) from None
        pi, label = algo.policy_probs(), f"{cfg.algo}/s{cfg.seed}@{algo.iteration}"
    return cfg, pi, label


def win_rate_matrix(game, policies: list[np.ndarray]) -> np.ndarray:
    return np.array([[game.expectation(game.win_rate(a, b)) for b in policies] for a in policies])


def tournament(paths: list[str], out: str | os.PathLike = "results/tournament", verbose: bool = True) -> dict:
    from prefzoo.zoo import plots

    loaded = [load_policy(p) for p in paths]
    games = {(c.env_id, repr(sorted(c.env_kwargs.items()))) for c, _, _ in loaded}
    if len(games) != 1:
        raise ConfigError(f"the runs are on different games {sorted(games)}; a tournament needs one game")
    cfg = loaded[0][0]
    game = gym.make(cfg.env_id, **cfg.env_kwargs).unwrapped.game
    names, policies = [], []
    for _, pi, label in loaded:
        while label in names:  # two runs with the same algo and seed
            label += "'"
        names.append(label)
        try:
            policies.append(game.check_policy(pi, label))
        except ValueError as err:  # a NaN, a wrong shape, rows off the simplex
            raise ConfigError(f"{label}: {err}") from None
    names += ["π_ref", "Nash (β=0)"]
    policies += [game.ref, game.nash(0.0)]
    matrix = win_rate_matrix(game, policies)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tournament.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["player", *names])
        writer.writerows([name, *row] for name, row in zip(names, matrix))
    lines = [f"## Tournament on {cfg.env_id}: P(row ≻ column), ρ-weighted, exact", "",
             "| row ≻ column | " + " | ".join(names) + " | mean |", "|---|" + "---|" * (len(names) + 1)]
    for name, row in zip(names, matrix):
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + f" | {row.mean():.3f} |")
    (out / "tournament.md").write_text("\n".join(lines) + "\n")
    png = plots.heatmap(matrix, names, out / "tournament.png", f"{cfg.env_id}: P(row ≻ column)")
    if verbose:
        print("\n".join(lines))
        print(f"\nwrote {out / 'tournament.md'}, {out / 'tournament.csv'} and {png}")
    return {"names": names, "matrix": matrix, "md": out / "tournament.md", "png": png}
