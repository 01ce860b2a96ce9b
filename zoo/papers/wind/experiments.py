"""The measurements of the WIND reproduction: pure functions from settings to numbers (no plots, no text).

Yang et al. (2025), Faster WIND, arXiv:2410.20727, on PrefBandit games. Exact ground truth comes from
``prefzoo.envs`` (equilibria, exploitability, :mod:`prefzoo.envs.log_win_rate`); the algorithms are
the shipped ones (their pure exact steps for the ground-truth dynamics, ``make_algo`` + ``zoo_configs``
for the sample-mode timings).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from scipy.optimize import minimize_scalar
from tqdm.auto import tqdm

import prefzoo
from prefzoo.algorithms.iterative_bon import bon_fixed_point, bon_step
from prefzoo.algorithms.wind import wind_step
from prefzoo.envs import log_win_rate as lwr
from prefzoo.envs import metrics
from prefzoo.zoo.config import resolve

BT, CYCLIC, ORDER = "prefzoo/PrefBandit-v0", "prefzoo/PrefBandit-Cyclic-v0", "prefzoo/PrefBandit-RewardOrder-v0"
STRICT_ORDER = {"reward_levels": 1000}  # a reward order with (almost surely) no ties
STEP_TOL = 1e-14  # the exact iteration has converged when max |π_{t+1} − π_t| is below this
THM1_TOL = 1e-8  # "≈ 0" for the exploitability of a limit in double precision (Theorem 1's verdict too)
FIG2_ALGOS = ("iterative_bon", "jbond", "sppo", "wind")
# Figure 1(b)'s two payoff conventions of the regularized win-rate game, u = payoff − β·KL(π‖π_ref):
# name -> (description, scale c of the payoff relative to P). Scaling the payoff by c is regularizing
# P by β/c, so the convention's equilibrium at β is game.nash(β / c).
PAYOFFS = {"P": ("payoff P(π≻π′), WIND's and prefzoo's games: π*_β = game.nash(β)", 1.0),
           "margin": ("margin payoff 2P(π≻π′) − 1: π*_β = game.nash(β/2)", 2.0)}
FIG1B_FIT_RANGE = (1 / 8, 2.0)  # the best-matching P-payoff β' is searched in [β/8, 2β]


@dataclasses.dataclass
class WindSettings:
    """Sizes of the WIND reproduction (``quick`` shrinks every budget for tests)."""

    env_kwargs: dict = dataclasses.field(default_factory=lambda: {"n_contexts": 8, "n_actions": 6, "seed": 0})
    thm1_max_iter: int = 20_000
    atom_sizes: tuple[int, ...] = (6, 24, 96, 384)
    fig1a_iterations: int = 6000
    fig1b_betas: tuple[float, ...] = tuple(np.geomspace(0.02, 10.0, 12))
    fig2_beta: float = 0.1
    fig2_target_fractions: tuple[float, ...] = (0.9, 0.97)  # of the way from π_ref to π*_β in win rate
    fig2_budget: int = 400_000  # oracle queries per run before it counts as "not reached"

    @classmethod
    def quick(cls) -> WindSettings:
        return cls(env_kwargs={"n_contexts": 3, "n_actions": 4, "seed": 0}, thm1_max_iter=3000,
                   atom_sizes=(6, 24), fig1a_iterations=60, fig1b_betas=(0.05, 0.3, 2.0),
                   fig2_budget=20_000)


def _game(env_id: str, env_kwargs: dict, **extra):
    return gym.make(env_id, **{**env_kwargs, **extra}).unwrapped.game


def run_exact_bon(game, n: int, alpha: float, max_iter: int, order=None,
                  trace: Callable[[np.ndarray], float] | None = None):
    """The exact iteration π_{t+1} ∝ π_ref^α·BoN_N(π_t)^{1−α} (``bon_step``, the step of
    ``IterativeBoN`` in exact mode; α = 0 is allowed here) from π_ref until the step is below
    :data:`STEP_TOL`. Returns (π_T, iterations, last step size, trace values)."""
    P = game.P if order is None else order
    log_ref = np.log(game.ref)
    pi, values, gap = game.ref.copy(), [], np.inf
    for t in range(1, max_iter + 1):
        new = bon_step(pi, log_ref, P, n, alpha)
        gap = float(np.abs(new - pi).max())
        pi = new
        if trace is not None:
            values.append(trace(pi))
        if gap < STEP_TOL:
            return pi, t, gap, values
    return pi, max_iter, gap, values


def theorem1(s: WindSettings) -> dict[str, Any]:
    """Exploitability of the exact iterative-BoN limit in the log-win-rate game, case by case.

    ``e_uniform``: the game whose win rate breaks ties (y's own atom included) uniformly, the one
    finite-response BoN solves exactly; ``e_inclusive``: the paper's literal P(y⪰π'). ``atoms``:
    the same on Bradley–Terry games of growing size (N = 2, β = 1).
    """
    kw = s.env_kwargs
    cases = [  # (label, env id, extra env kwargs, N, β (None: no mixing), theorem's conditions hold?)
        ("Bradley–Terry", BT, {}, 2, 0.25, True),
        ("Bradley–Terry", BT, {}, 2, 2.0, True),
        ("reward order, ties", ORDER, {}, 2, 2.0, True),
        ("reward order, ties", ORDER, {}, 4, 2.0, True),
        ("reward order, ties", ORDER, {}, 4, 0.5, True),
        ("strict reward order", ORDER, STRICT_ORDER, 2, 1.1, True),
        ("strict reward order", ORDER, STRICT_ORDER, 2, 0.9, True),
        ("cyclic (intransitive)", CYCLIC, {}, 2, 1.0, True),
        ("cyclic (intransitive)", CYCLIC, {}, 2, 0.05, False),
        ("Bradley–Terry, no mixing", BT, {}, 2, None, True),
        ("cyclic, no mixing", CYCLIC, {}, 2, None, False),
    ]
    rows, traces = [], {}
    for label, env_id, extra, n, beta, conditions in cases:
        game = _game(env_id, kw, **extra)
        alpha = 0.0 if beta is None else lwr.bon_mixing(beta, n)
        b = 0.0 if beta is None else beta

        def expl(pi, ties="uniform", game=game, b=b, n=n):
            return lwr.exploitability(game.P, game.ref, game.rho, pi, b, n, ties)

        pi, iters, gap, values = run_exact_bon(game, n, alpha, s.thm1_max_iter, trace=expl)
        converged = gap < STEP_TOL
        # float iterates that cycle towards the boundary can underflow onto a vertex and stop there
        # (an exact zero, exploitability above rounding): a "limit" exact arithmetic never reaches
        absorbed = converged and bool((pi == 0).any()) and expl(pi) > THM1_TOL
        row = {"case": label, "env": env_id, "N": n, "alpha": alpha, "beta": b, "converged": converged,
               "absorbed": absorbed, "conditions": conditions,
               "iterations": iters, "last_step": gap, "support": float(np.mean((pi > 1e-12).sum(1))),
               "n_actions": game.n_actions, "e_uniform": expl(pi), "e_inclusive": expl(pi, "inclusive"),
               "e_fixed_point": np.nan}
        if (absorbed or not converged) and beta is not None:  # the fixed point still exists (Newton continuation)
            fp = bon_fixed_point(game.P, game.ref, alpha, n)
            row["e_fixed_point"] = np.nan if fp is None else expl(fp)
        rows.append(row)
        traces[f"{label}, N={n}, " + ("α=0" if beta is None else f"β={beta:g}")] = np.asarray(values)
    atoms = []
    for y in s.atom_sizes:  # the literal tie-inclusive game: its gap is the atoms' doing
        game = _game(BT, {**kw, "n_actions": y})
        pi, *_ = run_exact_bon(game, 2, lwr.bon_mixing(1.0, 2), s.thm1_max_iter)
        atoms.append({"n_actions": y, "max_pi": float(pi.max(axis=1) @ game.rho),
                      "e_uniform": lwr.exploitability(game.P, game.ref, game.rho, pi, 1.0, 2),
                      "e_inclusive": lwr.exploitability(game.P, game.ref, game.rho, pi, 1.0, 2, "inclusive")})
    return {"rows": rows, "traces": traces, "atoms": atoms, "max_iter": s.thm1_max_iter}


FIG1A_RUNS = {"iterative BoN, N=2": ("bon", 2), "iterative BoN, N=4": ("bon", 4),
              "exact WIND β=0, η=2": ("wind", 2.0), "exact WIND β=0, η=6": ("wind", 6.0)}


def figure1a(s: WindSettings) -> dict[str, Any]:
    """No mixing: exact iterative BoN (α = 0) and exact WIND at β = 0 (MWU on the win rate).

    With α = 0 Theorem 1's β is 0; the β = 0 equilibria of the log-win-rate and win-rate games
    coincide on a transitive game (the Condorcet winner, δ on the top response): π̄*_0 =
    ``game.nash(0)``. WIND's η = 2(N−1) matches BoN to first order (log 2P ≈ 2P − 1 at P ≈ ½).
    ``curves``: KL(π̄*_0 ‖ π_t) on the transitive game; ``cyclic``: exploitability on the cyclic one.
    """
    out: dict[str, Any] = {"curves": {}, "cyclic": {}, "final_kl": {}, "log_expl": {}, "final_cyclic_expl": {},
                           "iterations": s.fig1a_iterations}
    for panel, env_id in (("curves", BT), ("cyclic", CYCLIC)):
        game = _game(env_id, s.env_kwargs)
        target = game.nash(0.0)
        log_ref = np.log(game.ref)
        for label, (kind, param) in FIG1A_RUNS.items():
            pi, values = game.ref.copy(), []
            for _ in range(s.fig1a_iterations):
                if kind == "bon":
                    pi = bon_step(pi, log_ref, game.P, param, 0.0)
                else:
                    with np.errstate(divide="ignore"):  # an underflowed response stays at 0
                        pi = np.exp(wind_step(np.log(pi), log_ref, game.win_rates(pi), param, 0.0))
                values.append(game.expectation(game.kl(target, pi)) if panel == "curves"
                              else game.exploitability(pi))
            out[panel][label] = np.asarray(values)
            if panel == "curves":
                out["final_kl"][label] = values[-1]
                out["log_expl"][label] = lwr.exploitability(game.P, game.ref, game.rho, pi, 0.0, 2)
            else:
                out["final_cyclic_expl"][label] = values[-1]
        if panel == "curves":
            out["target_log_expl"] = lwr.exploitability(game.P, game.ref, game.rho, target, 0.0, 2)
            out["target_is_pure"] = bool(np.all(target.max(axis=1) > 1 - 1e-9))
    return out


def figure1b(s: WindSettings) -> dict[str, Any]:
    """Mixing: π̄*_β (exact BoN fixed point, N = 2, α = β/(1+β)) against WIND's equilibrium under
    each payoff convention of :data:`PAYOFFS` (``row["payoffs"][name]``: KL both ways, KL of the
    equilibrium from π_ref, its win rate, and the best-matching β'/β in that convention).

    The best match β' = argmin KL(π̄*_β ‖ game.nash(β')) is fitted once on the P payoff over
    :data:`FIG1B_FIT_RANGE`; in a convention with payoff scale c it is c·β' (same equilibrium).
    """
    rows = []
    for env_id in (BT, CYCLIC):
        game = _game(env_id, s.env_kwargs)

        def win(pi, game=game):
            return game.expectation(game.win_rate(pi, game.ref))

        def kl(p, q, game=game):
            return game.expectation(game.kl(p, q))

        for beta in s.fig1b_betas:
            bon = bon_fixed_point(game.P, game.ref, lwr.bon_mixing(beta, 2), 2)
            if bon is None:
                continue
            lo, hi = FIG1B_FIT_RANGE
            fit = minimize_scalar(lambda lb, bon=bon, game=game: kl(bon, game.nash(float(np.exp(lb)))),
                                  bounds=(np.log(beta * lo), np.log(beta * hi)), method="bounded",
                                  options={"xatol": 1e-3})
            ratio = float(np.exp(fit.x) / beta)
            payoffs = {}
            for name, (_, scale) in PAYOFFS.items():
                eq = game.nash(beta / scale)
                payoffs[name] = {"kl": kl(bon, eq), "kl_reverse": kl(eq, bon), "kl_ref": kl(eq, game.ref),
                                 "win": win(eq), "best_ratio": scale * ratio}
            rows.append({"env": env_id, "beta": float(beta), "alpha": lwr.bon_mixing(beta, 2), "win_bon": win(bon),
                         "kl_best": float(fit.fun), "payoffs": payoffs,
                         "e_bon": lwr.exploitability(game.P, game.ref, game.rho, bon, beta, 2)})
    return {"rows": rows}


def figure2(s: WindSettings, seeds: list[int], progress: bool = True) -> dict[str, Any]:
    """Sample modes to common targets: ρ-weighted win rate against π_ref ≥ ½ + f·(W(π*_β) − ½).

    Same game (``PrefBandit-v0``), configs from ``zoo_configs`` via ``resolve``, regularization
    matched where the algorithm has one (WIND β; iterative BoN N = 2, α = β/(1+β)); J-BOND and
    SPPO are unregularized. Wall time = ``time/wall_s`` (the training steps only, evaluation
    excluded), queries = ``cost/queries``, both at the first evaluation past each target; a run
    stops once every target is reached or at the query budget. ``summary[algo][k]``: mean and
    standard error over the seeds that reached target k; ``limit_wins``: win rates vs π_ref of the
    unregularized limit and of iterative BoN's limit (the targets must lie below them).
    """
    import torch

    torch.set_num_threads(1)
    beta = s.fig2_beta
    game = _game(BT, s.env_kwargs)
    w_star = game.expectation(game.win_rate(game.nash(beta), game.ref))
    targets = [0.5 + f * (w_star - 0.5) for f in s.fig2_target_fractions]
    bon_limit = bon_fixed_point(game.P, game.ref, lwr.bon_mixing(beta, 2), 2)
    limit_wins = {"π*_0 (the unregularized limit)": game.expectation(game.win_rate(game.nash(0.0), game.ref)),
                  "π̄*_β (iterative BoN's limit)": np.nan if bon_limit is None
                  else game.expectation(game.win_rate(bon_limit, game.ref))}
    matched = {"wind": {"beta": beta}, "iterative_bon": {"n": 2, "mixing": lwr.bon_mixing(beta, 2)}}
    results: dict[str, list[dict]] = {a: [] for a in FIG2_ALGOS}
    hyperparams: dict[str, dict] = {}
    bar = tqdm(total=len(FIG2_ALGOS) * len(seeds), desc="figure 2 runs", disable=not progress, leave=False)
    for seed in seeds:  # interleave algorithms so machine load hits all of them alike
        for algo in FIG2_ALGOS:
            cfg = resolve(algo, BT, seed, {**matched.get(algo, {}), "env_kwargs": s.env_kwargs})
            hyperparams[algo] = {**cfg.hyperparams, "mode": "sample"}
            env = gym.make(BT, **cfg.env_kwargs)
            agent = prefzoo.make_algo(algo, env, seed=seed, **hyperparams[algo])
            hits: dict[int, dict] = {}

            def stop(a, m, hits=hits):
                for k, target in enumerate(targets):
                    if k not in hits and m[metrics.WIN_RATE_VS_REF] >= target:
                        hits[k] = {"queries": m[metrics.QUERIES], "wall_s": m[metrics.WALL_S],
                                   "iterations": a.iteration}
                return len(hits) < len(targets) and m[metrics.QUERIES] < s.fig2_budget

            agent.learn(10**9, callback=stop)
            final = agent.evaluate()
            results[algo].append({"seed": seed, "hits": hits, "final_win": final[metrics.WIN_RATE_VS_REF],
                                  "final_queries": final[metrics.QUERIES]})
            bar.update()
    bar.close()
    summary: dict[str, list[dict]] = {}
    for algo, runs in results.items():
        summary[algo] = []
        for k in range(len(targets)):
            ok = [r["hits"][k] for r in runs if k in r["hits"]]
            m = {"reached": len(ok), "runs": len(runs)}
            for key in ("wall_s", "queries"):
                v = np.array([h[key] for h in ok], dtype=float)
                m[key] = float(v.mean()) if len(v) else np.nan
                m[key + "_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
            summary[algo].append(m)
    return {"runs": results, "summary": summary, "targets": targets, "w_star": w_star, "hyperparams": hyperparams,
            "limit_wins": limit_wins, "beta": beta, "budget": s.fig2_budget, "seeds": list(seeds)}
