"""``prefzoo benchmark``: every algorithm on every game of a suite, one leaderboard.

All runs (algorithms × games × seeds) go to one backend at once (local processes or Ray), each
stopped at the same oracle-query budget. A run's **score** is its exploitability at the budget
divided by π_ref's exploitability on the same game (the run's iteration-0 row), so 1 = no better
than π_ref, 0 = a Nash equilibrium, and games of different scales are comparable. Writes

* ``scores.csv`` — ``algorithm, game, seed, score`` (one row per finished run);
* ``aggregate.csv``/``aggregate.md`` and PNGs — IQM with stratified-bootstrap intervals,
  probabilities of improvement, performance profiles (:mod:`prefzoo.zoo.aggregate`);
* ``per_game.csv``/``per_game.md`` — mean ± s.e. of the score per game;
* ``games/<env>/`` — each game's ``compare`` table and curves; ``logs/`` — the runs.

Configs: ``<tuned>/<algo>.yml`` where it has an entry for the game (``prefzoo tune``), else the
packaged ``zoo_configs``. The default suite (every bandit family and both token games, the token
games at 4 tokens × length 3) is sized for a laptop.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np

from prefzoo.envs import metrics
from prefzoo.zoo import aggregate, backends, compare, config, rundir, tune
from prefzoo.zoo.config import ConfigError

BANDITS = ("prefzoo/PrefBandit-v0", "prefzoo/PrefBandit-Cyclic-v0", "prefzoo/PrefBandit-Mixed-v0",
           "prefzoo/PrefBandit-RewardOrder-v0")
TOKEN_GAMES = ("prefzoo/TokenGame-v0", "prefzoo/TokenGame-Cyclic-v0")
DEFAULT_GAMES = BANDITS + TOKEN_GAMES
SUITE_ENV_KWARGS = {game: {"vocab_size": 4, "max_length": 3} for game in TOKEN_GAMES}  # 84 sequences per prompt
DEFAULT_ALGOS = ("wind", "sppo", "iterative_bon", "nash_md", "mpo", "inpo", "egpo", "dno", "xpo", "spo")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_BUDGET = 50_000


def normalized_score(arrays: dict[str, np.ndarray], budget: float, headline: str) -> float:
    """The game's ``headline`` metric's distance to its ideal (:func:`~prefzoo.envs.metrics.shortfall`:
    the exploitability itself on exact games) at ``budget`` queries / the same at iteration 0 (π_ref)."""
    if arrays[metrics.ITERATIONS][0] != 0:
        raise ValueError("progress.csv does not start at iteration 0 (π_ref)")
    at_budget = rundir.value_at(arrays[metrics.QUERIES], arrays[headline], budget)[0]
    return float(metrics.shortfall(headline, at_budget) / metrics.shortfall(headline, arrays[headline][0]))


def plan_suite(algos, games, seeds, budget, tuned, device) -> list[config.RunConfig]:
    configs = []
    for game in games:
        overrides = {"env_kwargs": SUITE_ENV_KWARGS[game]} if game in SUITE_ENV_KWARGS else {}
        for algo in algos:
            directory = tuned if tuned is not None and tune.has_entry(tuned, algo, game) else None
            configs += compare.plan([algo], game, seeds, overrides, directory, device, None, None, budget)
    return configs


def suite_note(tuned, algos, games) -> str:
    """``tune.tuned_note`` when every pair was tuned alike, else which pairs used tuned configs."""
    try:
        return tune.tuned_note(tuned, algos, games)
    except ConfigError as err:
        pairs = [f"{a} on {g}" for g in games for a in algos if tune.has_entry(tuned, a, g)]
        print(f"note: {err}")
        return (f"Tuned configs from {tuned} for {len(pairs)} of {len(algos) * len(games)} algorithm-game pairs "
                f"({', '.join(pairs) or 'none'}); the others use zoo_configs. Tuning effort is not equal.")


def benchmark(out: str | os.PathLike, *, algos=DEFAULT_ALGOS, games=DEFAULT_GAMES, seeds=DEFAULT_SEEDS,
              budget: int = DEFAULT_BUDGET, workers: int | None = None, backend: str = "local",
              address: str | None = None, retries: int = backends.DEFAULT_RETRIES, tuned=None,
              device: str = "cpu", progress: bool = True) -> dict:
    """Run the suite and write the leaderboard; returns paths, score rows and the aggregates."""
    if budget is None or budget <= 0:
        raise ConfigError(f"--budget must be a positive number of queries, got {budget}")
    if not algos or not games or not seeds:
        raise ConfigError("benchmark needs at least one algorithm, one game and one seed")
    out = Path(out)
    configs = plan_suite(list(algos), list(games), list(seeds), budget, tuned, device)
    note = suite_note(tuned, algos, games) if tuned is not None else None
    with backends.make_backend(backend, workers=workers, address=address) as executor:
        out.mkdir(parents=True, exist_ok=True)
        print(f"benchmark: {len(algos)} algorithms × {len(games)} games × {len(seeds)} seeds = {len(configs)} runs, "
              f"budget {budget:,} queries, {executor.describe()} → {out}", flush=True)
        t0 = time.perf_counter()
        outcomes = compare.run_all(configs, out, executor, budget, progress, retries)
    wall = time.perf_counter() - t0

    rows, tables = [], {}
    for game in games:
        picked = [i for i, c in enumerate(configs) if c.env_id == game]
        game_configs, game_outcomes = [configs[i] for i in picked], [outcomes[i] for i in picked]
        try:
            tables[game] = compare.tabulate(game_configs, game_outcomes, out / "games" / rundir.env_dirname(game),
                                            budget, title=game, note=note)
        except ConfigError as err:
            print(f"note: {game}: {err}")
            continue
        for cfg, outcome in zip(game_configs, game_outcomes, strict=True):
            if outcome.result is not None:
                score = normalized_score(rundir.budget_arrays(outcome.result, budget), budget,
                                         outcome.result["headline"])
                if np.isfinite(score):
                    rows.append({"algorithm": cfg.algo, "game": game, "seed": cfg.seed, "score": score})
    if not rows:
        raise ConfigError("no run of the suite finished with a score")
    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["algorithm", "game", "seed", "score"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "score": f"{r['score']:.10g}"} for r in rows)
    title = f"{len(games)} games, {len(seeds)} seeds, {budget:,} queries"
    agg = aggregate.write_aggregates(rows, out, title=title)
    per_game = write_per_game(rows, agg["order"], out, note)
    print(agg["md"].read_text())
    print(per_game.read_text())
    print(f"finished {sum(o.result is not None for o in outcomes)}/{len(outcomes)} runs in {wall:.0f} s")
    return {"scores_csv": out / "scores.csv", "aggregate": agg, "per_game_md": per_game, "rows": rows,
            "tables": tables, "outcomes": outcomes, "configs": configs, "wall_s": wall}


def write_per_game(rows: list[dict], algos: list[str], out: Path, note: str | None) -> Path:
    """``per_game.csv`` (algorithm, game, mean, se, n) and ``per_game.md`` (games × algorithms)."""
    games = list(dict.fromkeys(r["game"] for r in rows))
    cells = {}
    for algo in algos:
        for game in games:
            cells[algo, game] = compare.mean_se(np.array([r["score"] for r in rows
                                                          if r["algorithm"] == algo and r["game"] == game]))
    with open(out / "per_game.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["algorithm", "game", "mean", "se", "n"])
        writer.writerows([a, g, f"{m:.6g}", f"{s:.3g}", n] for (a, g), (m, s, n) in cells.items())
    lines = ["## Normalized exploitability per game (mean ± s.e. over seeds; 1 = π_ref, 0 = Nash)", ""]
    lines += [note, ""] if note else []
    lines += ["| game | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for game in games:
        lines.append(f"| {game} | " + " | ".join("n/a" if cells[a, game][2] == 0 else
                                                 f"{cells[a, game][0]:.3g} ± {cells[a, game][1]:.2g}" for a in algos)
                     + " |")
    path = out / "per_game.md"
    path.write_text("\n".join(lines) + "\n")
    return path
