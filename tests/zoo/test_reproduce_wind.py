"""``prefzoo reproduce wind``: the quick run writes the report and every PNG and prints the summary
and a RESULT line; the benchmark script ends with the same RESULT keys; Theorem 1's headline is at
rounding level even with the quick budgets."""

import subprocess
import sys
from pathlib import Path

import pytest

from prefzoo.zoo.reproduce import PAPERS, reproduce

PNGS = ("theorem1.png", "fig1a.png", "fig1b.png", "fig2.png")
KEYS = ("thm1_max_expl", "fig1a_final_kl", "fig1b_max_kl", "wind_vs_bon_time")


def test_cli_quick_writes_report_and_all_pngs(tmp_path):
    out = tmp_path / "wind"
    proc = subprocess.run([sys.executable, "-m", "prefzoo", "reproduce", "wind", "--quick", "--out", str(out),
                           "--seeds", "0", "1", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "report.md").read_text()
    for png in PNGS:
        assert (out / png).stat().st_size > 10_000, png  # a real image, not an empty file
        assert f"]({png})" in report
    for section in ("## Summary", "## 1. Theorem 1", "## 2. Figure 1(a)", "## 3. Figure 1(b)", "## 4. Figure 2"):
        assert section in report
    assert "Theorem 1 (iterative BoN solves the log-win-rate game): **holds**" in report
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ") and all(f"{k}=" in last for k in KEYS)
    assert "Figure 2" in proc.stdout and str(out / "report.md") in proc.stdout


def test_direct_call_headline_and_unknown_paper(tmp_path):
    result = reproduce("wind", tmp_path, seeds=[0, 1], quick=True, progress=False)
    head = result["headline"]
    assert head["thm1_max_expl"] <= 1e-8
    assert head["fig1a_final_kl"] < 1e-3
    assert all(p.is_file() for p in result["pngs"]) and result["report"].is_file()
    rows = result["theorem1"]["rows"]
    assert any(not r["conditions"] and (not r["converged"] or r["absorbed"]) for r in rows)  # a failure shown
    assert "wind" in PAPERS
    with pytest.raises(ValueError, match="unknown paper"):
        reproduce("nope", tmp_path)


def test_cli_rejects_unknown_paper():
    proc = subprocess.run([sys.executable, "-m", "prefzoo", "reproduce", "sppo"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


@pytest.mark.slow
def test_benchmark_script_quick_ends_with_result(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce_wind.py"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path), "--seeds", "0", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ") and all(f"{k}=" in last for k in KEYS)
