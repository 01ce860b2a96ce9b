"""``prefzoo reproduce wind``: the quick run writes the report and every PNG and prints the summary
and a RESULT line; the benchmark script ends with the same RESULT keys; Theorem 1's headline is at
rounding level even with the quick budgets; every verdict of the report flips when its measured
number crosses its threshold (the quick run's numbers, perturbed)."""

import copy
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scipy.special import logsumexp, rel_entr

from prefzoo.zoo.papers import PAPERS, format_summary, reproduce
from prefzoo.zoo.papers.wind import experiments, report, verdicts
from prefzoo.zoo.papers.wind.experiments import PAYOFFS, THM1_TOL

PNGS = ("theorem1.png", "fig1a.png", "fig1b.png", "fig2.png")
KEYS = ("thm1_max_expl", "fig1a_final_kl", "fig1b_max_kl", "fig1b_max_kl_half", "wind_vs_bon_time",
        "wind_vs_bon_queries", "runtime_s")


pytestmark = pytest.mark.xdist_group("test_reproduce_wind")  # one worker builds the module's `quick` once


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return reproduce("wind", tmp_path_factory.mktemp("wind"), seeds=[0, 1], quick=True, progress=False)


def _report(numbers, tmp_path=Path("out")):
    """The verdicts and the report's markdown of (perturbed) numbers."""
    judged = verdicts.evaluate(numbers)
    return judged, report.build_report(numbers, judged, experiments.WindSettings.quick(), [0, 1], True, tmp_path, 1.0)


def test_cli_quick_writes_report_and_all_pngs(tmp_path):
    out = tmp_path / "wind"
    proc = subprocess.run([sys.executable, "-m", "prefzoo", "reproduce", "wind", "--quick", "--out", str(out),
                           "--seeds", "0", "1", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "report.md").read_text()
    for png in PNGS:
        assert (out / png).stat().st_size > 10_000, png  # a real image, not an empty file
        assert f"]({png})" in text
    for section in ("## Summary", "## 1. Theorem 1", "## 2. Figure 1(a)", "## 3. Figure 1(b)", "## 4. Figure 2",
                    "### π*_β under the P payoff", "### π*_β under the margin payoff"):
        assert section in text
    assert "Theorem 1 (iterative BoN solves the log-win-rate game): **holds**" in text
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ") and all(f"{k}=" in last for k in KEYS)
    assert "Figure 2" in proc.stdout and str(out / "report.md") in proc.stdout
    assert "Figure 1(b), P payoff" in proc.stdout and "Figure 1(b), margin payoff" in proc.stdout


def test_direct_call_summary_and_unknown_paper(quick, tmp_path):
    head = quick["headline"]
    assert tuple(head) == KEYS  # the benchmark's RESULT keys
    assert head["thm1_max_expl"] <= THM1_TOL
    assert head["fig1a_final_kl"] < 1e-3
    assert all(p.is_file() for p in quick["pngs"]) and quick["report"].is_file()
    rows = quick["numbers"]["theorem1"]["rows"]
    assert any(not r["conditions"] and (not r["converged"] or r["absorbed"]) for r in rows)  # a failure shown
    assert set(quick["verdicts"]) == {"theorem1", "figure1a", "figure1b_P", "figure1b_margin", "figure2"}
    assert quick["verdicts"]["theorem1"].holds
    # the printed summary is the dict's, not the markdown's: one row per verdict, RESULT last
    text = format_summary(quick)
    assert all(v.claim in text and v.measured in text for v in quick["verdicts"].values())
    assert text.splitlines()[-1].startswith("RESULT thm1_max_expl=")
    assert "wind" in PAPERS
    with pytest.raises(ValueError, match="unknown paper"):
        reproduce("nope", tmp_path)


def test_cli_rejects_unknown_paper():
    proc = subprocess.run([sys.executable, "-m", "prefzoo", "reproduce", "sppo"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_margin_payoff_equilibrium_is_nash_at_half_beta():
    """The margin game max_π min_π′ E[2P(π≻π′) − 1] − βKL(π‖π_ref) + βKL(π′‖π_ref), checked by its own
    closed-form exploitability (numpy, from the definition): 0 at game.nash(β/2), not at game.nash(β)."""
    game = gym.make("prefzoo/PrefBandit-v0", n_contexts=3, n_actions=4, seed=0).unwrapped.game
    beta = 0.3

    def margin_exploitability(pi):
        payoff = 2 * np.einsum("xij,xj->xi", game.P, pi) - 1  # 2P(y≻π) − 1, E_π of it is 0
        best = beta * logsumexp(payoff / beta, b=game.ref, axis=1)
        return float(game.rho @ (best + beta * rel_entr(pi, game.ref).sum(axis=1)))

    assert PAYOFFS["margin"][1] == 2.0 and PAYOFFS["P"][1] == 1.0
    assert abs(margin_exploitability(game.nash(beta / PAYOFFS["margin"][1]))) < 1e-9
    assert margin_exploitability(game.nash(beta)) > 1e-3


def test_theorem1_verdict_flips_at_its_threshold(quick):
    numbers = copy.deepcopy(quick["numbers"])
    row = next(r for r in numbers["theorem1"]["rows"] if r["conditions"] and verdicts.has_limit(r))
    row["e_uniform"] = 0.9 * THM1_TOL
    judged, md = _report(numbers)
    assert judged["theorem1"].holds and "Theorem 1 (iterative BoN solves the log-win-rate game): **holds**" in md
    row["e_uniform"] = 1.1 * THM1_TOL
    judged, md = _report(numbers)
    assert not judged["theorem1"].holds
    assert "Theorem 1 (iterative BoN solves the log-win-rate game): **does not hold**" in md
    assert "above the threshold 1e-08" in judged["theorem1"].sentence
    row["e_uniform"], row["converged"] = 0.0, False  # a case within the conditions without a limit
    judged, _ = _report(numbers)
    assert not judged["theorem1"].holds and "has a limit" in judged["theorem1"].sentence


def test_theorem1_findings_follow_the_numbers(quick):
    t1 = copy.deepcopy(quick["numbers"]["theorem1"])
    findings = " ".join(verdicts.theorem1_findings(t1))
    assert "as predicted" in findings  # the quick run: collapse exactly when β ≤ 1
    big = next(r for r in t1["rows"] if r["env"] == experiments.ORDER and r["beta"] > 1)
    big["support"] = 1.0  # a collapse where the theory predicts none
    assert "unlike the prediction" in " ".join(verdicts.theorem1_findings(t1))
    t1["atoms"][-1]["e_inclusive"] = 10 * t1["atoms"][0]["e_inclusive"]  # grows as max π falls
    assert "does not shrink steadily" in " ".join(verdicts.theorem1_findings(t1))


def test_figure1a_verdict_flips_at_its_threshold(quick):
    numbers = copy.deepcopy(quick["numbers"])
    finals = numbers["figure1a"]["final_kl"]
    label = next(iter(finals))
    for value, holds in ((0.9 * verdicts.FIG1A_KL_TOL, True), (1.1 * verdicts.FIG1A_KL_TOL, False)):
        finals.update(dict.fromkeys(finals, 0.0))
        finals[label] = value
        judged, md = _report(numbers)
        assert judged["figure1a"].holds is holds
        assert ("the largest is below the threshold" in md) is holds
    cyclic = numbers["figure1a"]["final_cyclic_expl"]
    cyclic.update(dict.fromkeys(cyclic, 2 * verdicts.CYCLE_TOL))
    assert "none converges" in verdicts.figure1a_cyclic(numbers["figure1a"])
    cyclic[label] = 0.5 * verdicts.CYCLE_TOL
    assert f"{len(cyclic) - 1}/{len(cyclic)} methods" in verdicts.figure1a_cyclic(numbers["figure1a"])


@pytest.mark.parametrize("payoff", list(PAYOFFS))
def test_figure1b_verdict_flips_at_its_threshold(quick, payoff):
    numbers = copy.deepcopy(quick["numbers"])
    rows = numbers["figure1b"]["rows"]
    for factor, holds in ((0.99, True), (1.01, False)):
        for r in rows:  # every β at `factor` × the threshold of KL(π̄*_β ‖ π*_β) / KL(π*_β ‖ π_ref)
            p = r["payoffs"][payoff]
            p["kl"] = factor * verdicts.FIG1B_REL_KL_TOL * p["kl_ref"]
        judged, md = _report(numbers)
        assert judged[f"figure1b_{payoff}"].holds is holds
        assert judged[f"figure1b_{payoff}"].sentence in md
        assert f"{PAYOFFS[payoff][0]}: {verdicts.word(holds)}" in md


@pytest.mark.parametrize("payoff", list(PAYOFFS))
def test_figure1b_position_follows_the_best_ratio(quick, payoff):
    """Where π̄*_β sits relative to π*_β is counted from β′/β, so it cannot contradict the table."""
    f1b = copy.deepcopy(quick["numbers"]["figure1b"])
    n = len(f1b["rows"])
    for ratio, expected in ((0.5, f"at {n}/{n} β, within a factor 1.1 of β at 0, more regularized at 0"),
                            (1.0, f"at 0/{n} β, within a factor 1.1 of β at {n}, more regularized at 0"),
                            (1.5, f"at 0/{n} β, within a factor 1.1 of β at 0, more regularized at {n}")):
        for r in f1b["rows"]:
            r["payoffs"][payoff]["best_ratio"] = ratio
        assert expected in verdicts.figure1b_position(f1b, payoff)


def test_figure1b_between_is_computed(quick):
    """The old report said π̄*_β 'sits between π*_β/2 and π*_β' while its best β′/β were all ≤ ½."""
    f1b = copy.deepcopy(quick["numbers"]["figure1b"])
    n = len(f1b["rows"])
    for ratio, between, below, above in ((0.45, 0, n, 0), (0.75, n, 0, 0), (1.2, 0, 0, n)):
        for r in f1b["rows"]:
            r["payoffs"]["P"]["best_ratio"] = ratio
        text = verdicts.figure1b_between(f1b)
        assert f"at {between}/{n} β; it is less regularized than both (β′/β < ½) at {below}/{n} and more " \
               f"regularized than both (β′/β > 1) at {above}/{n}" in text
    for r in f1b["rows"]:
        r["payoffs"]["margin"]["kl"], r["payoffs"]["P"]["kl"] = 1.0, 2.0
    assert f"closer of the two (smaller KL(π̄*_β ‖ ·)) at {n}/{n} β" in verdicts.figure1b_between(f1b)


def test_figure2_verdict_follows_the_fastest(quick):
    numbers = copy.deepcopy(quick["numbers"])
    last = {a: rows[-1] for a, rows in numbers["figure2"]["summary"].items()}
    for m in last.values():
        m.update(reached=2, runs=2, wall_s=2.0, queries=1e4)
    last["wind"]["wall_s"] = 1.0
    judged, md = _report(numbers)
    assert judged["figure2"].holds and "Figure 2 (WIND is faster than iterative BoN, J-BOND, SPPO): **holds**" in md
    assert "time 2 (WIND faster)" in judged["figure2"].sentence
    last["wind"]["wall_s"] = 3.0
    judged, md = _report(numbers)
    assert not judged["figure2"].holds and "**does not hold** in wall time" in md
    assert "time 0.667 (WIND not faster)" in judged["figure2"].sentence
    last["wind"]["wall_s"], last["wind"]["reached"] = 1.0, 1  # fastest, but not with every seed
    assert not verdicts.evaluate(numbers)["figure2"].holds


@pytest.mark.slow
def test_benchmark_script_quick_ends_with_result(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce_wind.py"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path), "--seeds", "0", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ") and all(f"{k}=" in last for k in KEYS)
