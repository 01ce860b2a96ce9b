"""Verdicts of the WIND reproduction: pure functions of the measured numbers, each with a stated threshold.

Every sentence here that compares numbers is built from them, so it flips when they cross the
threshold (design §18: reports are computed, not written). :func:`evaluate` gives one
:class:`Verdict` per claim; the report and the summary printed by the CLI both read them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from prefzoo.zoo.papers.wind.experiments import FIG1B_FIT_RANGE, FIG2_ALGOS, ORDER, PAYOFFS, THM1_TOL

FIG1A_KL_TOL = 1e-6  # Figure 1(a) holds when every method ends within this KL of π̄*_0
CYCLE_TOL = 1e-3  # exploitability still above this after the last iteration: "has not converged"
FIG1B_REL_KL_TOL = 0.1  # "very close": KL(π̄*_β ‖ π*_β) ≤ this × KL(π*_β ‖ π_ref) at every β
RATIO_TOL = 0.1  # a best-matching β' within a factor 1.1 of β counts as "at β"
SUPPORT_SLACK = 0.5  # a limit has collapsed when its mean support is below n_actions − this


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim of the paper: whether it holds here, the deciding number against its threshold
    (``measured``, one line for tables) and the report's summary sentence."""

    claim: str
    holds: bool
    measured: str
    sentence: str


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a report: ``n/a`` for None/NaN, ``inf``, else ``digits`` significant digits."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if np.isinf(x):
        return "inf"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.{digits - 1}e}"


def word(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


def _at_most(x: float, threshold: float) -> str:
    return f"at most the threshold {threshold:g}" if x <= threshold else f"above the threshold {threshold:g}"


# ---------------------------------------------------------------------- Theorem 1
def has_limit(row: dict) -> bool:
    """The exact iteration converged to a point that is not a float-underflow artefact."""
    return row["converged"] and not row["absorbed"]


def theorem1_max_expl(t1: dict) -> float:
    """Largest log-win-rate exploitability of a limit, over the cases within Theorem 1's conditions."""
    values = [r["e_uniform"] for r in t1["rows"] if r["conditions"] and has_limit(r)]
    return max(values) if values else np.nan


def verdict_theorem1(t1: dict) -> Verdict:
    """Holds iff every case within the conditions has a limit and its exploitability is ≤ THM1_TOL."""
    within = [r for r in t1["rows"] if r["conditions"]]
    limits = [r for r in within if has_limit(r)]
    worst = theorem1_max_expl(t1)
    holds = len(limits) == len(within) and bool(worst <= THM1_TOL)
    return Verdict(
        claim="Theorem 1: the iterative-BoN limit is a Nash equilibrium of the log-win-rate game",
        holds=holds,
        measured=f"limits {len(limits)}/{len(within)}, max e_β {fmt(worst)} (threshold {THM1_TOL:g})",
        sentence=f"Theorem 1 (iterative BoN solves the log-win-rate game): {word(holds)} — in {len(limits)}/"
                 f"{len(within)} cases within its conditions the exact iteration has a limit, and the largest "
                 f"exploitability of a limit is {fmt(worst)}, {_at_most(worst, THM1_TOL)} (uniform tie-break win "
                 "rate, the game finite-response BoN solves exactly).")


def theorem1_findings(t1: dict) -> list[str]:
    """The measured sentences around Theorem 1: the literal tie-inclusive payoff, the cases outside
    the conditions, and the collapse on deterministic orders (predicted exactly when β ≤ 1)."""
    limits = [r for r in t1["rows"] if r["conditions"] and has_limit(r) and r["beta"] > 0]
    out = []
    if limits:
        incl = max(r["e_inclusive"] for r in limits)
        atoms = sorted(t1["atoms"], key=lambda a: -a["max_pi"])
        values = [a["e_inclusive"] for a in atoms]
        steps = np.diff(values)
        shrinks = len(values) > 1 and bool((steps <= 0).all()) and values[-1] < values[0]
        trend = ("shrinks" if shrinks else "does not shrink steadily") + " as max π(y) falls (" + ", ".join(
            f"{fmt(a['e_inclusive'])} at max π {a['max_pi']:.3f}" for a in atoms) + ")"
        out.append(f"With the paper's literal tie-inclusive P(y⪰π′) the same limits have exploitability up to "
                   f"{fmt(incl)}, {_at_most(incl, THM1_TOL)}; on Bradley–Terry games of growing size it {trend}.")
    outside = [r for r in t1["rows"] if not r["conditions"]]
    if outside:
        no_limit = [r for r in outside if not has_limit(r)]
        text = (f"Outside its conditions (intransitive P with little or no mixing) {len(no_limit)}/{len(outside)} "
                "cases have no limit")
        fixed = [r["e_fixed_point"] for r in no_limit if np.isfinite(r["e_fixed_point"])]
        if fixed:
            text += (f"; where the fixed point exists (Newton continuation) the largest exploitability of one is "
                     f"{fmt(max(fixed))}, {_at_most(max(fixed), THM1_TOL)}")
        out.append(text + ".")
    orders = [r for r in limits if r["env"] == ORDER]
    if orders:
        small = [r for r in orders if r["beta"] <= 1]
        large = [r for r in orders if r["beta"] > 1]
        n_small = sum(r["support"] < r["n_actions"] - SUPPORT_SLACK for r in small)
        n_large = sum(r["support"] < r["n_actions"] - SUPPORT_SLACK for r in large)
        as_predicted = n_small == len(small) and n_large == 0
        out.append(f"On deterministic reward orders the limit collapses onto the top reward class (mean support "
                   f"below n − {SUPPORT_SLACK:g}) in {n_small}/{len(small)} cases with β ≤ 1 and {n_large}/"
                   f"{len(large)} with β > 1: " + ("as predicted (collapse exactly when the exponent 1/β ≥ 1)."
                                                  if as_predicted else "unlike the prediction (collapse exactly "
                                                  "when the exponent 1/β ≥ 1)."))
    return out


# ---------------------------------------------------------------------- Figure 1(a)
def verdict_figure1a(f1a: dict) -> Verdict:
    """Holds iff every method ends within FIG1A_KL_TOL of π̄*_0 on the transitive game."""
    worst = max(f1a["final_kl"].values())
    holds = bool(worst < FIG1A_KL_TOL)
    finals = ", ".join(f"{k} {fmt(v)}" for k, v in f1a["final_kl"].items())
    return Verdict(
        claim="Figure 1(a): without mixing, iterative BoN and exact WIND reach the same point",
        holds=holds,
        measured=f"max KL(π̄*_0‖π_T) {fmt(worst)} (threshold {FIG1A_KL_TOL:g})",
        sentence=f"Figure 1(a) (no mixing, BoN and exact WIND reach the same point): {word(holds)} on the transitive "
                 f"game: KL(π̄*_0 ‖ π_T) after {f1a['iterations']} iterations is {finals}; the largest is "
                 + ("below" if holds else "not below") + f" the threshold {FIG1A_KL_TOL:g}.")


def figure1a_cyclic(f1a: dict) -> str:
    """How many methods have not converged on the intransitive game (exploitability > CYCLE_TOL)."""
    finals = f1a["final_cyclic_expl"]
    high = sum(v > CYCLE_TOL for v in finals.values())
    return (f"On the intransitive game, after {f1a['iterations']} iterations {high}/{len(finals)} methods still have "
            f"exploitability above {CYCLE_TOL:g} (" + ", ".join(f"{k} {fmt(v)}" for k, v in finals.items()) + ")"
            + ("; none converges." if high == len(finals) else "."))


# ---------------------------------------------------------------------- Figure 1(b)
def figure1b_relative_kl(row: dict, payoff: str) -> float:
    """KL(π̄*_β ‖ π*_β) / KL(π*_β ‖ π_ref) in the given payoff convention."""
    p = row["payoffs"][payoff]
    return p["kl"] / p["kl_ref"]


def figure1b_position(f1b: dict, payoff: str) -> str:
    """Where π̄*_β sits relative to the convention's π*_β: the best-matching β'/β, counted below,
    within a factor 1 + RATIO_TOL of, and above 1."""
    ratios = np.array([r["payoffs"][payoff]["best_ratio"] for r in f1b["rows"]])
    less = int((ratios < 1 / (1 + RATIO_TOL)).sum())
    more = int((ratios > 1 + RATIO_TOL).sum())
    scale = PAYOFFS[payoff][1]
    lo, hi = scale * FIG1B_FIT_RANGE[0], scale * FIG1B_FIT_RANGE[1]
    at_bound = int(((ratios <= lo * 1.01) | (ratios >= hi / 1.01)).sum())
    text = (f"the best-matching π*_β′ of this convention has β′/β = {ratios.min():.3f}–{ratios.max():.3f}: π̄*_β is "
            f"less regularized than π*_β (β′ < β/{1 + RATIO_TOL:g}) at {less}/{len(ratios)} β, within a factor "
            f"{1 + RATIO_TOL:g} of β at {len(ratios) - less - more}, more regularized at {more}")
    if at_bound:
        text += f" ({at_bound} fits at the search bound {lo:g}–{hi:g}×β)"
    return text + "."


def verdict_figure1b(f1b: dict, payoff: str) -> Verdict:
    """Holds iff KL(π̄*_β ‖ π*_β) ≤ FIG1B_REL_KL_TOL × KL(π*_β ‖ π_ref) at every β, π*_β being the
    equilibrium of the ``payoff`` convention (:data:`PAYOFFS`)."""
    rows = f1b["rows"]
    rel = [figure1b_relative_kl(r, payoff) for r in rows]
    worst = max(rel)
    holds = bool(worst <= FIG1B_REL_KL_TOL)
    per_game = ", ".join(f"{env.split('/')[1]} {max(x for x, r in zip(rel, rows, strict=True) if r['env'] == env):.3g}"
                         for env in dict.fromkeys(r["env"] for r in rows))
    gap = max(abs(r["win_bon"] - r["payoffs"][payoff]["win"]) for r in rows)
    ratios = [r["payoffs"][payoff]["best_ratio"] for r in rows]
    desc = PAYOFFS[payoff][0]
    return Verdict(
        claim=f"Figure 1(b), {payoff} payoff: π̄*_β and π*_β are very close",
        holds=holds,
        measured=f"max KL/KL(π*_β‖π_ref) {worst:.3g} (threshold {FIG1B_REL_KL_TOL:g}); "
                 f"β′/β {min(ratios):.2f}–{max(ratios):.2f}",
        sentence=f"Figure 1(b) (π̄*_β and π*_β are very close), {desc}: {word(holds)} — KL(π̄*_β ‖ π*_β) is up to "
                 f"{fmt(max(r['payoffs'][payoff]['kl'] for r in rows))} nats and up to {worst:.3g}× KL(π*_β ‖ π_ref) "
                 f"({per_game}), {_at_most(worst, FIG1B_REL_KL_TOL)}; win rates vs π_ref up to {gap:.3f} apart; "
                 + figure1b_position(f1b, payoff))


def figure1b_between(f1b: dict) -> str:
    """π̄*_β against both conventions at once: between π*_β/2 and π*_β of the P payoff (β′/β ∈ [½, 1]),
    beyond either, and which convention's equilibrium is closer in KL."""
    rows = f1b["rows"]
    r = np.array([row["payoffs"]["P"]["best_ratio"] for row in rows])
    between = int(((r >= 0.5) & (r <= 1)).sum())
    below, above = int((r < 0.5).sum()), int((r > 1).sum())
    margin_closer = sum(row["payoffs"]["margin"]["kl"] < row["payoffs"]["P"]["kl"] for row in rows)
    return (f"Between the two conventions: π̄*_β lies between π*_β/2 (margin payoff) and π*_β (P payoff) — "
            f"best-matching P-payoff β′/β in [½, 1] — at {between}/{len(r)} β; it is less regularized than both "
            f"(β′/β < ½) at {below}/{len(r)} and more regularized than both (β′/β > 1) at {above}/{len(r)}. The "
            f"margin payoff's π*_β is the closer of the two (smaller KL(π̄*_β ‖ ·)) at {margin_closer}/{len(r)} β.")


# ---------------------------------------------------------------------- Figure 2
def bon_over_wind(f2: dict, key: str) -> float:
    """Iterative BoN's mean ``key`` (wall_s or queries) to the harder target over WIND's (> 1: WIND cheaper)."""
    last = {a: rows[-1] for a, rows in f2["summary"].items()}
    return last["iterative_bon"][key] / last["wind"][key]


def figure2_ranking(f2: dict, key: str) -> str | None:
    """The algorithm with the smallest mean ``key`` to the harder target, among those that reached it with
    every seed (None if none did)."""
    last = {a: f2["summary"][a][-1] for a in FIG2_ALGOS}
    eligible = [a for a in FIG2_ALGOS if last[a]["reached"] == last[a]["runs"]]
    return min(eligible, key=lambda a: last[a][key], default=None)


def _over_one(ratio: float, yes: str, no: str) -> str:
    return "not comparable: a target not reached" if np.isnan(ratio) else yes if ratio > 1 else no


def verdict_figure2(f2: dict) -> Verdict:
    """Holds iff WIND has the smallest mean wall time to the harder target among the algorithms that
    reached it with every seed."""
    last = {a: f2["summary"][a][-1] for a in FIG2_ALGOS}
    fastest, fewest = figure2_ranking(f2, "wall_s"), figure2_ranking(f2, "queries")
    holds = fastest == "wind"

    def cells(key):
        return ", ".join(f"{a} {fmt(last[a][key])}" + ("" if last[a]["reached"] == last[a]["runs"] else
                                                      f" ({last[a]['reached']}/{last[a]['runs']} seeds)")
                         if last[a]["reached"] else f"{a} not reached" for a in FIG2_ALGOS)

    time_ratio, query_ratio = bon_over_wind(f2, "wall_s"), bon_over_wind(f2, "queries")
    return Verdict(
        claim="Figure 2: WIND is faster than iterative BoN, J-BOND and SPPO",
        holds=holds,
        measured=f"fastest {fastest}, fewest queries {fewest}; BoN/WIND time {fmt(time_ratio)}, "
                 f"queries {fmt(query_ratio)}",
        sentence=f"Figure 2 (WIND is faster than iterative BoN, J-BOND, SPPO): {word(holds)} in wall time (fastest of "
                 f"the algorithms that reached the target with every seed: {fastest}); fewest oracle queries: "
                 f"{fewest}. To win rate vs π_ref ≥ {f2['targets'][-1]:.4f}: wall s {cells('wall_s')}; queries "
                 f"{cells('queries')}. Iterative BoN/WIND ratio: time {fmt(time_ratio)} "
                 f"({_over_one(time_ratio, 'WIND faster', 'WIND not faster')}), queries {fmt(query_ratio)} "
                 f"({_over_one(query_ratio, 'WIND fewer', 'WIND not fewer')}).")


def evaluate(numbers: dict) -> dict[str, Verdict]:
    """Every verdict of the reproduction from the numbers of :mod:`.experiments`."""
    return {"theorem1": verdict_theorem1(numbers["theorem1"]),
            "figure1a": verdict_figure1a(numbers["figure1a"]),
            **{f"figure1b_{p}": verdict_figure1b(numbers["figure1b"], p) for p in PAYOFFS},
            "figure2": verdict_figure2(numbers["figure2"])}
