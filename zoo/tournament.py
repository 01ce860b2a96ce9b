"""``prefzoo tournament``: round-robin win rates between saved policies of one game.

On a game with exact services the players are each given run (its ``policy.npy``, or a
checkpoint restored into a freshly built algorithm), π_ref and the von Neumann winner
``game.nash(0)``; entry (i, j) is E_{x~ρ} P(π_i ≻ π_j | x) =
``game.expectation(game.win_rate(π_i, π_j))``, antisymmetric about ½, and the Nash row is ≥ ½
everywhere (up to the LP's tolerance). On a game without them (a language model) the players are
the runs' checkpoints and π_ref, and the entries are estimates with standard errors
(:meth:`~prefzoo.envs.oracle.PreferenceOracle.estimate_win_rates`: on an LM game, the held-out
prompts).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import gymnasium as gym
import numpy as np

from prefzoo.algorithms.checkpoint import CheckpointError
from prefzoo.zoo import rundir, runner
from prefzoo.zoo.config import ConfigError, RunConfig, fingerprint


def run_source(path: str | os.PathLike) -> tuple[RunConfig, Path]:
    """(config, file holding the policy) of a run directory (its ``policy.npy``, else its latest
    checkpoint: a killed run, or a language model's run), a checkpoint ``.pt`` or a ``.npy``."""
    path = Path(path)
    if path.is_dir():
        run_dir, source = path, path / "policy.npy"
        if not source.is_file():
            source = latest_checkpoint(run_dir, f"{run_dir} has neither policy.npy nor a checkpoint")
    elif path.suffix in (".pt", ".npy") and path.is_file():
        run_dir, source = (path.parent.parent if path.suffix == ".pt" else path.parent), path
    else:
        raise ConfigError(f"{path}: expected a run directory, a checkpoint .pt or a policy .npy")
    return rundir.load_run_config(run_dir), source


def latest_checkpoint(run_dir: Path, missing: str) -> Path:
    """The run's latest checkpoint; ``ConfigError(missing)`` when it has none."""
    saved = rundir.checkpoints(run_dir)
    if not saved:
        raise ConfigError(missing)
    return saved[max(saved)]


def restore(cfg: RunConfig, source: Path, env: gym.Env | None = None):
    """The run's algorithm (on ``env`` when given) with the checkpoint ``source`` loaded."""
    try:
        return runner.build(cfg, env).load(source)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


def load_policy(cfg: RunConfig, source: Path) -> tuple[np.ndarray, str]:
    """(policy [X, Y], label) from a ``policy.npy`` or a checkpoint."""
    if source.suffix == ".npy":
        try:
            return np.load(source, allow_pickle=False), f"{cfg.algo}/s{cfg.seed}"
        except (ValueError, OSError, EOFError) as err:
            raise ConfigError(f"{source} is not a policy array ({str(err).splitlines()[0]})") from None
    algo = restore(cfg, source)
    return algo.policy_probs(), f"{cfg.algo}/s{cfg.seed}@{algo.iteration}"


def win_rate_matrix(game, policies: list[np.ndarray]) -> np.ndarray:
    return np.array([[game.expectation(game.win_rate(a, b)) for b in policies] for a in policies])


def unique(labels: list[str]) -> list[str]:
    """``labels`` with a ' appended to repeats (two runs with the same algo and seed)."""
    names: list[str] = []
    for label in labels:
        while label in names:
            label += "'"
        names.append(label)
    return names


def exact_matrix(game, runs: list[tuple[RunConfig, Path]]) -> tuple[list[str], np.ndarray, None, str]:
    loaded = [load_policy(cfg, source) for cfg, source in runs]
    names, policies = unique([label for _, label in loaded]), []
    for (pi, _), label in zip(loaded, names):
        try:
            policies.append(game.check_policy(pi, label))
        except ValueError as err:  # a NaN, a wrong shape, rows off the simplex
            raise ConfigError(f"{label}: {err}") from None
    matrix = win_rate_matrix(game, policies + [game.ref, game.nash(0.0)])
    return names + ["π_ref", "Nash (β=0)"], matrix, None, "ρ-weighted, exact"


def estimated_matrix(env, runs: list[tuple[RunConfig, Path]], seed: int = 0):
    """A game without exact services (a language model): each run's policy restored from its
    checkpoint onto one env, and π_ref, compared by :meth:`~prefzoo.envs.oracle.PreferenceOracle.estimate_win_rates`."""
    game = env.unwrapped.game
    labels, samplers = [], []
    for cfg, source in runs:
        if source.suffix != ".pt":  # a table cannot be sampled here: the run's latest checkpoint instead
            source = latest_checkpoint(source.parent, f"{source}: on {cfg.env_id} (no exact services) a player is "
                                                      f"a checkpoint, and {source.parent} has none")
        algo = restore(cfg, source, env)
        labels.append(f"{cfg.algo}/s{cfg.seed}@{algo.iteration}")
        samplers.append(algo.policy.sample)
    rng = np.random.default_rng(seed)
    contexts = game.evaluation_contexts(rng)
    matrix, se = game.estimate_win_rates(samplers + [game.sample_ref], contexts, rng)
    return (unique(labels) + ["π_ref"], matrix, se,
            f"estimated from the oracle's probabilities on {len(contexts)} contexts, ± s.e.")


def write_matrix(path: Path, names: list[str], matrix: np.ndarray) -> None:
    """A players × players CSV: a ``player`` column, then one column per player."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["player", *names])
        writer.writerows([name, *row] for name, row in zip(names, matrix))


def tournament(paths: list[str], out: str | os.PathLike = "results/tournament", verbose: bool = True) -> dict:
    """Round-robin P(row ≻ column) between the runs' policies, π_ref (and on exact games the von
    Neumann winner); writes ``tournament.csv`` (``tournament_se.csv`` for estimates), ``.md``
    and ``.png`` under ``out``."""
    from prefzoo.zoo import plots

    runs = [run_source(p) for p in paths]
    games = {repr(sorted((k, v) for k, v in fingerprint(c).items() if k.startswith("env"))) for c, _ in runs}
    if len(games) != 1:
        raise ConfigError(f"the runs are on different games {sorted(games)}; a tournament needs one game")
    cfg = runs[0][0]
    env = gym.make(cfg.env_id, **cfg.env_kwargs)
    game = env.unwrapped.game
    names, matrix, se, how = exact_matrix(game, runs) if game.exact else estimated_matrix(env, runs)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_matrix(out / "tournament.csv", names, matrix)
    if se is not None:
        write_matrix(out / "tournament_se.csv", names, se)
    lines = [f"## Tournament on {cfg.env_id}: P(row ≻ column), {how}", "",
             "| row ≻ column | " + " | ".join(names) + " | mean |", "|---|" + "---|" * (len(names) + 1)]
    for i, (name, row) in enumerate(zip(names, matrix)):
        cells = [f"{v:.3f}" if se is None else f"{v:.3f} ± {se[i, j]:.3f}" for j, v in enumerate(row)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row.mean():.3f} |")
    (out / "tournament.md").write_text("\n".join(lines) + "\n")
    png = plots.heatmap(matrix, names, out / "tournament.png", f"{cfg.env_id}: P(row ≻ column)")
    if verbose:
        print("\n".join(lines))
        print(f"\nwrote {out / 'tournament.md'}, {out / 'tournament.csv'} and {png}")
    return {"names": names, "matrix": matrix, "md": out / "tournament.md", "png": png}
