"""The markdown report of the WIND reproduction, built from the numbers of :mod:`.experiments` and the
verdicts of :mod:`.verdicts`: every claim next to its measured figure. Fixed text here states
definitions, set-ups and theory only; every sentence that compares measurements comes from
:mod:`.verdicts`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prefzoo.envs import log_win_rate as lwr
from prefzoo.zoo.papers.wind.experiments import BT, FIG2_ALGOS, PAYOFFS, STEP_TOL, THM1_TOL, WindSettings
from prefzoo.zoo.papers.wind.verdicts import (
    FIG1B_REL_KL_TOL,
    Verdict,
    figure1a_cyclic,
    figure1b_between,
    figure1b_relative_kl,
    fmt,
    theorem1_findings,
)

LOG_GAME = [
    "## The log-win-rate game (definition and closed form)",
    "",
    "Per context, a player using π against π' gets u_β(π; π') = E_{y∼π}[log w(y; π')] − β·KL(π‖π_ref). "
    "Best response: π_ref·w^{1/β}/Z, value β·log Σ_y π_ref(y)·w(y; π')^{1/β}. Exploitability of (π, π):",
    "",
    "    e_β(π) = E_x[ β·log Σ_y π_ref(y)·w(y; π)^{1/β} + β·KL(π‖π_ref) − Σ_y π(y)·log w(y; π) ]",
    "",
    "(β = 0: max_y log w − E_π log w), exactly 0 iff π ∝ π_ref·w(·; π)^{1/β}. "
    "`prefzoo.envs.log_win_rate` implements it; the tests check it against a numerical best-response search.",
    "",
    "Win rate w: with F⁻ = P(y ≻ π) strictly and F = P(y ⪰ π) (ties — always y itself, and equal rewards on an "
    "order — counted), the paper writes w = F (`ties=\"inclusive\"`). The exact Best-of-N law on a finite "
    "response set with ties split ∝ π is BoN_N(π) = N·π·w_N^{N−1} with "
    "w_N = ((F^N − F⁻^N)/(N(F − F⁻)))^{1/(N−1)}, the power mean of y's reward quantile under uniform tie-breaking "
    "(`ties=\"uniform\"`). Hence a fixed point π ∝ π_ref^α·BoN_N(π)^{1−α} is exactly π ∝ π_ref·w_N^{1/β} with "
    "β = α/((1−α)(N−1)): Theorem 1's Nash condition. For N = 2, w_2 = P(y≻π) for any P (intransitive too); for "
    "N > 2 the game needs a reward order. w_N → F when no response carries mass (the paper's continuous setting).",
    "",
]


def _theorem1(t1: dict, verdict: Verdict) -> list[str]:
    lines = [
        "## 1. Theorem 1",
        "",
        "Claim: for π_ref in the relative interior and N ≥ 2, π_∞ = lim π_T exists and (π_∞, π_∞) is a Nash "
        "equilibrium of the log-win-rate game, β = α/((1−α)(N−1)) (β = 0 without mixing).",
        "",
        "Measured: exact iterative BoN (`bon_step`, the step of `IterativeBoN` in exact mode, selection by the game's "
        f"P) from π_ref until max|π_t+1 − π_t| < {STEP_TOL:g} (at most {t1['max_iter']} iterations). A limit whose "
        f"exploitability exceeds {THM1_TOL:g} with an exact zero in it is float underflow, not a limit.",
        "",
        "| game | within conditions | N | α | β | limit? (iterations) | mean support | e_β, uniform ties | "
        "e_β, tie-inclusive | fixed point's e_β |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t1["rows"]:
        if r["absorbed"]:
            lim = f"**no**: cycles to the boundary, float underflow stops it on a vertex ({r['iterations']})"
        elif r["converged"]:
            lim = f"yes ({r['iterations']})"
        else:
            lim = f"**no**: cycles (step {fmt(r['last_step'])} after {r['iterations']})"
        lines.append(f"| {r['case']} | {'yes' if r['conditions'] else 'no'} | {r['N']} | {r['alpha']:.3g} | "
                     f"{r['beta']:.3g} | {lim} | {r['support']:.2f}/{r['n_actions']} | {fmt(r['e_uniform'])} | "
                     f"{fmt(r['e_inclusive'])} | {fmt(r['e_fixed_point'])} |")
    lines += [
        "",
        f"Verdict: {verdict.sentence}",
        "",
        "Theory for the reading: the exponent 1/β decides which equilibrium the iteration finds. On a "
        "deterministic order the bottom response's log-mass is multiplied by N(1−α) per step, and N(1−α) ≥ 1 ⟺ "
        "β ≤ 1, so for β ≤ 1 the full-support equilibrium is unstable and the iteration is predicted to collapse "
        "onto the top reward class: still a Nash equilibrium (every other response has w = 0, log w = −∞), but a "
        "degenerate one, far from WIND's full-support π*_β. On an intransitive game with little or no mixing the "
        "theorem's conditions fail and the iterates may cycle. Measured:",
        "",
        *[f"- {s}" for s in theorem1_findings(t1)],
        "",
        "The paper's literal tie-inclusive payoff on finite games (Bradley–Terry, N = 2, β = 1), by size:",
        "",
        "| responses | mean max_y π_∞(y) | e_β, uniform ties | e_β, tie-inclusive |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a['n_actions']} | {a['max_pi']:.3f} | {fmt(a['e_uniform'])} | {fmt(a['e_inclusive'])} |"
              for a in t1["atoms"]]
    return lines + ["", "![theorem 1](theorem1.png)", ""]


def _figure1a(f1a: dict, verdict: Verdict) -> list[str]:
    lines = ["## 2. Figure 1(a): no mixing",
             "",
             "Claim: without mixing, iterative BoN and exact WIND converge to the same point π̄*_0.",
             "",
             "What is compared: α = 0 gives β = 0 in Theorem 1, so exact WIND runs at β = 0 (multiplicative weights on "
             "P(y≻π_t), `wind_step` with β = 0). On a transitive game the β = 0 equilibria of both games are the "
             "Condorcet winner, π̄*_0 = `game.nash(0)` (pure here: "
             f"{'yes' if f1a['target_is_pure'] else 'no'}; its log-win-rate exploitability e_0 = "
             f"{fmt(f1a['target_log_expl'])}). η = 2(N−1) is the first-order match to BoN_N (log 2P ≈ 2P − 1 at "
             "P ≈ ½).",
             "",
             "| method | KL(π̄*_0 ‖ π_T) | log-win-rate e_0(π_T) | exploitability on the cyclic game |",
             "|---|---|---|---|"]
    lines += [f"| {k} | {fmt(v)} | {fmt(f1a['log_expl'][k])} | {fmt(f1a['final_cyclic_expl'][k])} |"
              for k, v in f1a["final_kl"].items()]
    return lines + ["", f"Verdict: {verdict.sentence} {figure1a_cyclic(f1a)}", "", "![figure 1a](fig1a.png)", ""]


def _figure1b(f1b: dict, verdicts: dict[str, Verdict]) -> list[str]:
    lines = ["## 3. Figure 1(b): with mixing",
             "",
             "Claim: π̄*_β (log-win-rate equilibrium = iterative BoN's fixed point, N = 2, α = β/(1+β)) and π*_β "
             "(WIND's equilibrium of the β-regularized win-rate game) are very close.",
             "",
             "The abstract does not say which payoff the win-rate game uses, so π*_β is measured under both:",
             "",
             *[f"- **{name}**: {desc}" for name, (desc, _) in PAYOFFS.items()],
             "",
             "The margin payoff is the P payoff scaled by 2, hence the P game at β/2. For orientation (theory, not a "
             "measurement): the log payoff's slope 1/w is 2 at w = ½ (as the margin payoff's at the same β), 1 at "
             "w = 1 (as the P payoff's), and above 2 for losing responses (w < ½). Best-matching β′: "
             "argmin KL(π̄*_β ‖ π*_β′) over the convention's own equilibria.",
             ""]
    rows = f1b["rows"]
    e_bon = max(abs(r["e_bon"]) for r in rows)
    for name in PAYOFFS:
        lines += [f"### π*_β under the {name} payoff", "",
                  "| game | β | α | KL(π̄*_β‖π*_β) | KL(π*_β‖π̄*_β) | KL(π*_β‖π_ref) | "
                  f"first / third KL (threshold {FIG1B_REL_KL_TOL:g}) | best β′/β | win vs π_ref: π̄*_β | π*_β |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            p = r["payoffs"][name]
            lines.append(f"| {r['env'].split('/')[1]} | {r['beta']:.3g} | {r['alpha']:.3g} | {fmt(p['kl'])} | "
                         f"{fmt(p['kl_reverse'])} | {fmt(p['kl_ref'])} | {fmt(figure1b_relative_kl(r, name))} | "
                         f"{p['best_ratio']:.3f} | {r['win_bon']:.4f} | {p['win']:.4f} |")
        lines += ["", f"Verdict: {verdicts[f'figure1b_{name}'].sentence}", ""]
    lines += [figure1b_between(f1b), "",
              f"π̄*_β is the log-win-rate equilibrium throughout: max |e_β(π̄*_β)| = {fmt(e_bon)}, "
              + (f"at most {THM1_TOL:g}." if e_bon <= THM1_TOL else f"above {THM1_TOL:g}."),
              "", "![figure 1b](fig1b.png)", ""]
    return lines


def _figure2(f2: dict, verdict: Verdict, env_kwargs: dict) -> list[str]:
    beta, targets = f2["beta"], f2["targets"]
    below = all(t < w for w in f2["limit_wins"].values() if np.isfinite(w) for t in targets)
    lines = ["## 4. Figure 2: run time",
             "",
             "Claim: WIND reaches a given quality faster than iterative BoN, J-BOND and SPPO.",
             "",
             f"Set-up: {BT} ({env_kwargs}), sample mode, hyperparameters from `zoo_configs/<algo>.yml` via `resolve` "
             f"(table below), regularization matched where there is one (WIND β = {beta}; iterative BoN N = 2, "
             f"α = {lwr.bon_mixing(beta, 2):.4f}, the same effective β); J-BOND and SPPO are unregularized. "
             "Targets: ρ-weighted win rate of the last iterate against π_ref ≥ "
             + " and ".join(f"{t:.4f}" for t in targets) + f" = ½ + f·(W(π*_β) − ½), W(π*_β) = {f2['w_star']:.4f}. "
             "Win rates of the limits: " + ", ".join(f"{k} {fmt(w, 4)}" for k, w in f2["limit_wins"].items())
             + ("; every target is below them, so every method can get there. " if below else
                "; **a target is not below them**, so some method may never get there. ")
             + f"Wall time = `time/wall_s` (training steps only; evaluation excluded) on a shared 2-core CPU; a run "
             f"stops when every target is reached or at {f2['budget']:,} queries; seeds {f2['seeds']}, algorithms "
             "interleaved per seed.",
             "",
             "| algorithm | hyperparameters |", "|---|---|"]
    lines += [f"| {a} | {', '.join(f'{k}={v}' for k, v in sorted(f2['hyperparams'][a].items()))} |"
              for a in FIG2_ALGOS]
    lines += ["", "| algorithm | target | reached | wall s to target | queries to target |", "|---|---|---|---|---|"]
    for a in FIG2_ALGOS:
        for t, m in zip(targets, f2["summary"][a], strict=True):
            def cell(k, m=m):
                return f"{fmt(m[k])} ± {fmt(m[k + '_se'], 2)}" if m["reached"] else "not reached"
            lines.append(f"| {a} | {t:.4f} | {m['reached']}/{m['runs']} | {cell('wall_s')} | {cell('queries')} |")
    lines += ["", f"Verdict (harder target): {verdict.sentence}"]
    if not verdict.holds:
        lines += ["", "Context: the cost per iteration is set by each config's batch size and gradient steps (table "
                  "above; the zoo_configs are tuned for accuracy per query, not for speed), and J-BOND and SPPO are "
                  "unregularized, so nothing holds them at π*_β on their way to the winner."]
    return lines + ["", "![figure 2](fig2.png)", ""]


def build_report(numbers: dict, verdicts: dict[str, Verdict], settings: WindSettings, seeds, quick: bool,
                 out: Path, runtime: float) -> str:
    """The report's markdown: summary of the verdicts, the log-win-rate game, then one section per claim."""
    lines = [
        "# Reproduction: Faster WIND (Yang et al., arXiv:2410.20727) on PrefBandit games",
        "",
        f"Command: `prefzoo reproduce wind --out {out}" + (" --quick" if quick else "")
        + f" --seeds {' '.join(map(str, seeds))}`. Games: `gym.make(<id>, **{settings.env_kwargs})`. "
        f"Runtime {runtime:.0f} s." + ("  **Quick mode: tiny budgets, numbers are a smoke test only.**" if quick
                                        else ""),
        "",
        "## Summary",
        "",
        *[line for name, v in verdicts.items() for line in
          [f"- {v.sentence}", *(f"  - {s}" for s in (theorem1_findings(numbers["theorem1"]) if name == "theorem1"
                                                    else []))]],
        "",
        *LOG_GAME,
        *_theorem1(numbers["theorem1"], verdicts["theorem1"]),
        *_figure1a(numbers["figure1a"], verdicts["figure1a"]),
        *_figure1b(numbers["figure1b"], verdicts),
        *_figure2(numbers["figure2"], verdicts["figure2"], settings.env_kwargs),
    ]
    return "\n".join(lines)
