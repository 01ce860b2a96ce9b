"""Log-reward estimator tables: exact binomial formulas, rates, caching, CLI (no simulation)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from contextlib import nullcontext

import numpy as np
import pytest

from prefzoo.envs import estimators as est

P_GRID = np.r_[np.geomspace(1e-4, 1, 40), np.linspace(0.05, 0.95, 19)]


def exact_mean(g, p: float) -> float:
    """E_p g[c+1], c ~ Bin(K−1, p), by an explicit sum (independent of scipy)."""
    n = len(g) - 1
    return math.fsum(g[c] * math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(est.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(est, "_MEMORY", {})


@pytest.mark.parametrize("K", [2, 5, 16, 40])
def test_ustat_unbiased_for_powers(K):
    for m in {m for m in (0, 1, 2, K // 2, K - 1) if m <= K - 1}:
        g = est.table("ustat", K, m=m)
        assert max(abs(exact_mean(g, p) - p**m) for p in P_GRID) < 1e-12


def test_ustat_poly_unbiased_for_polynomial_reward():
    coeffs = [0.3, -1.0, 0.0, 2.5]  # e.g. a Tsallis/Gini-type reward
    g = est.ustat_poly(coeffs, 9)
    for p in P_GRID:
        assert exact_mean(g, p) == pytest.approx(np.polyval(coeffs[::-1], p), abs=1e-12)


@pytest.mark.parametrize("name", est.LOG_ESTIMATORS)
@pytest.mark.parametrize("K", [4, 16])
def test_no_table_is_unbiased_for_log(name, K):
    g = est.table(name, K)
    assert np.max(np.abs(est.bias(g, P_GRID))) > 1e-6
    # the scipy-based bias agrees with the explicit binomial sum
    for p in P_GRID[::7]:
        assert est.bias(g, p) == pytest.approx(exact_mean(g, p) - math.log(p), abs=1e-9)


@pytest.mark.parametrize("K", [4, 16, 32])
def test_digamma_bias_series(K):
    g = est.table("digamma", K)
    for p in [1e-3, 0.01, 1 / K, 0.2, 0.5, 0.9]:
        v = np.arange(K, 200_000)
        series = math.fsum((1 - p) ** v / v)
        assert est.bias(g, p) == pytest.approx(series, abs=1e-10)
        assert series >= 0


def test_variance_matches_explicit_sum():
    g = est.table("aqp", 16)
    for p in [0.01, 0.1, 0.7]:
        second = exact_mean(g**2, p)
        assert est.variance(g, p) == pytest.approx(second - exact_mean(g, p) ** 2, abs=1e-10)


def test_plugin_bias_matches_design():
    K = 64
    g = est.table("plugin", K)
    for p in [0.1, 0.3, 0.6]:  # (1−p)/(2Kp) to leading order
        assert est.bias(g, p) == pytest.approx((1 - p) / (2 * K * p), rel=0.25)
    assert 0.4 < est.bias(est.table("plugin", 32), 1 / 32) < 0.6  # about 0.5 nats at p = 1/K


def _slope(name):
    Ks = np.array([4, 8, 16, 32])
    sup = [est.p_weighted_sup_bias(est.table(name, K)) for K in Ks]
    return np.polyfit(np.log(Ks), np.log(sup), 1)[0]


def test_rates_in_K():
    assert _slope("minimax") <= -1.8
    assert _slope("aqp") <= -1.8
    assert -1.2 <= _slope("plugin") <= -0.8
    for K in [4, 8, 16, 32]:
        assert est.minimax_value(K) * K**2 == pytest.approx(0.32, abs=0.01)


@pytest.mark.parametrize("K", [16, 32])
def test_aqp_bias_budget_and_variance(K):
    e_star = est.p_weighted_sup_bias(est.table("minimax", K))
    assert e_star == pytest.approx(est.minimax_value(K), rel=1e-5)  # float64 rounding of the table
    eps = est._OPTIONS["aqp"]["eps"]
    g = est.table("aqp", K)
    assert est.p_weighted_sup_bias(g) <= (1 + eps) * e_star * (1 + 1e-9)
    assert est.worst_sd(g) <= 5
    assert est.worst_sd(est.table("minimax", K)) > 100
    assert est.info("aqp", K)["gap"] < 1e-3


def test_minimax_equioscillates():
    """Haar-system optimality: the weighted error attains ±E* alternately at ≥ K+1 points."""
    K = 8
    g, e_star = est.table("minimax", K), est.minimax_value(K)
    p = est.eval_grid(K)
    err = p * est.bias(g, p)
    signs = np.sign(err[np.abs(err) > e_star * (1 - 1e-4)])
    assert 1 + np.count_nonzero(np.diff(signs)) >= K + 1


def test_shipped_tables_load_without_solving(monkeypatch):
    def no_solve(*args, **kwargs):
        raise AssertionError("solver called for a shipped table")

    monkeypatch.setitem(est._BUILDERS, "minimax", no_solve)
    monkeypatch.setitem(est._BUILDERS, "aqp", no_solve)
    for K in est.SHIPPED_K:
        assert est.table("aqp", K).shape == (K,)
        with pytest.warns(RuntimeWarning) if K == 64 else nullcontext():
            assert est.table("minimax", K).shape == (K,)
    assert not (est.cache_dir()).exists()


def test_disk_cache_is_reused_and_corruption_rebuilt(monkeypatch):
    K = 5  # not shipped
    first = est.table("aqp", K, eps=3.0)
    files = list(est.cache_dir().glob("*.json"))
    assert {f.name.split("-")[0] for f in files} == {"aqp", "minimax"}
    monkeypatch.setattr(est, "_MEMORY", {})
    calls = []
    real = est._BUILDERS["aqp"]
    monkeypatch.setitem(est._BUILDERS, "aqp", lambda *a, **k: calls.append(1) or real(*a, **k))
    np.testing.assert_array_equal(est.table("aqp", K, eps=3.0), first)
    assert calls == []  # read from disk
    aqp_file = next(f for f in files if f.name.startswith("aqp"))
    aqp_file.write_text('{"table": [1, 2')  # truncated write
    monkeypatch.setattr(est, "_MEMORY", {})
    with pytest.warns(UserWarning, match="rebuilding"):
        again = est.table("aqp", K, eps=3.0)
    assert calls == [1]
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert json.loads(aqp_file.read_text())["table"] == pytest.approx(again.tolist())


def test_table_returns_copies():
    g = est.table("aqp", 8)
    g[:] = 0
    assert np.any(est.table("aqp", 8) != 0)


def test_bad_input():
    with pytest.raises(ValueError, match="did you mean 'digamma'"):
        est.table("digama", 8)
    with pytest.raises(ValueError, match="K must be an integer >= 2"):
        est.table("plugin", 1)
    with pytest.raises(ValueError, match=r"m must be an integer in \[0, 7\]"):
        est.table("ustat", 8, m=8)
    with pytest.raises(ValueError, match="ustat needs its option m"):
        est.table("ustat", 8)
    with pytest.raises(TypeError, match="did you mean 'eps'"):
        est.table("aqp", 8, esp=1.0)
    with pytest.raises(ValueError, match="p must lie in"):
        est.bias(est.table("plugin", 4), 0.0)


def test_monotone_aqp_limited_to_first_order_rate():
    g = est.table("aqp", 8, eps=3.0, monotone=True)
    assert np.all(np.diff(g) >= -1e-9)
    with pytest.raises(ValueError, match="Monotone tables"):
        est.build("aqp", 16, monotone=True)


def test_cli_writes_table_and_png(tmp_path):
    out = tmp_path / "est"
    res = subprocess.run([sys.executable, "-m", "prefzoo", "estimators", "--K", "16", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for name in est.LOG_ESTIMATORS:
        assert f"| {name} |" in res.stdout
    assert (out / "estimators_K16.md").read_text().count("|\n") == 2 + len(est.LOG_ESTIMATORS)
    assert (out / "estimators_K16.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_k_below_2_as_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "prefzoo", "estimators", "--K", "1", "--out", str(tmp_path / "e")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "argument --K: expected an integer >= 2, got '1'" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "e").exists()
