"""Validation helpers (envs/checks.py), bandit size limits and the exact services at extreme β
(issue 13 items 7, 9, 10)."""

import math
import time
import tracemalloc

import gymnasium as gym
import mpmath
import numpy as np
import pytest

import prefzoo  # noqa: F401  (registers the env ids)
from prefzoo.envs import checks
from prefzoo.envs.game import bandit_game_bytes, make_game
from prefzoo.envs.oracle import kl_divergence


# ---------------------------------------------------------------------- the helpers
def test_helpers_return_canonical_values_and_name_the_parameter():
    assert checks.check_int("k", 4.0, low=2) == 4 and isinstance(checks.check_int("k", np.int64(3)), int)
    assert checks.check_real("lr", np.float32(0.5), 0, low_open=True) == 0.5
    assert checks.check_probability("p", 1) == 1.0
    assert checks.check_choice("mode", "exact", ("exact", "sample")) == "exact"
    with pytest.raises(ValueError, match=r"^k must be an integer >= 2, got 2\.5$"):
        checks.check_int("k", 2.5, low=2)
    with pytest.raises(TypeError, match=r"^k must be an integer >= 2, got True \(bool\)$"):
        checks.check_int("k", True, low=2)
    with pytest.raises(TypeError, match=r"^lr must be a finite number > 0, got '1e-3' \(str\)$"):
        checks.check_real("lr", "1e-3", 0, low_open=True)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got nan$"):
        checks.check_real("lr", math.nan, 0, low_open=True)
    with pytest.raises(ValueError, match=r"^clip must be a finite number in \(0, 1\), got 1\.0$"):
        checks.check_probability("clip", 1.0, low_open=True, high_open=True)
    assert checks.check_real("beta", math.inf, 0, finite=False) == math.inf
    with pytest.raises(ValueError, match=r"unknown mode 'exakt' \(did you mean 'exact'\?\); expected one of"):
        checks.check_choice("mode", "exakt", ("exact", "sample"))
    with pytest.raises(ValueError, match=r"unknown mode \['x'\]"):
        checks.check_choice("mode", ["x"], {"exact": 1})


def test_check_array():
    rows = checks.check_array("pi", [[0.25, 0.75], [1.0, 0.0]], (2, None), simplex=True)
    assert rows.dtype == np.float64
    with pytest.raises(ValueError, match=r"pi must have shape \[2, any\], got \[3\]"):
        checks.check_array("pi", [1, 2, 3], (2, None))
    with pytest.raises(ValueError, match="rho must be finite"):
        checks.check_array("rho", [0.5, np.nan])
    with pytest.raises(ValueError, match="rho must be non-negative"):
        checks.check_array("rho", [1.5, -0.5], nonneg=True)
    with pytest.raises(ValueError, match=r"each row of pi must sum to 1; row 1 sums to 0\.9"):
        checks.check_array("pi", [[0.5, 0.5], [0.5, 0.4]], simplex=True)
    with pytest.raises(TypeError, match="w must be an array of numbers"):
        checks.check_array("w", ["a", "b"])


# ---------------------------------------------------------------------- item 9: sizes in closed form
@pytest.mark.parametrize("sizes", [{"n_actions": 10**6}, {"n_contexts": 10**7}])
def test_oversized_bandit_game_is_refused_before_allocating(sizes):
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"would need about [\d.]+ [GT]iB of memory, over the limit of 4 GiB"):
        make_game("bt", **sizes)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 2**20 and time.perf_counter() - start < 5  # nothing big was allocated
    with pytest.raises(ValueError, match="would need about"):  # the env constructor too
        gym.make("prefzoo/PrefBandit-v0", **sizes)


def test_memory_limit_is_configurable_and_the_estimate_bounds_the_measured_peak(monkeypatch):
    X, Y, d = 150, 40, 4
    estimate = bandit_game_bytes(X, Y, d)
    for family in ("bt", "cyclic", "mixed", "reward_order"):
        tracemalloc.start()
        make_game(family, n_contexts=X, n_actions=Y, feature_dim=d)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert 0.5 * estimate < peak <= estimate, (family, peak / estimate)
    monkeypatch.setenv(checks.MAX_GAME_GB_ENV, str(0.5 * estimate / 2**30))
    with pytest.raises(ValueError, match=r"over the limit of .*\$PREFZOO_MAX_GAME_GB"):
        make_game("bt", n_contexts=X, n_actions=Y, feature_dim=d)
    monkeypatch.setenv(checks.MAX_GAME_GB_ENV, "lots")
    with pytest.raises(TypeError, match=r"\$PREFZOO_MAX_GAME_GB must be a finite number > 0"):
        make_game("bt")


# ---------------------------------------------------------------------- item 7: extreme β
@pytest.fixture(scope="module")
def game():
    return make_game("cyclic", n_contexts=4, n_actions=5, seed=3)


@pytest.mark.parametrize("beta", [math.nan, math.inf, -1.0, "0.1"])
def test_beta_is_validated_with_its_name(game, beta):
    error = TypeError if isinstance(beta, str) else ValueError
    with pytest.raises(error, match="beta must be a finite number >= 0"):
        game.exploitability(game.ref, beta)
    with pytest.raises(error, match="beta must be a finite number >= 0"):
        game.nash(beta)


def test_tiny_beta_continuation_is_a_loop_and_errors_name_the_callers_beta(game):
    pi = game.nash(1e-10)  # ~30 continuation rungs
    assert game.exploitability(pi, 1e-10) < 1e-12
    assert game.exploitability(pi, 0.0) < 1e-8  # π*_β → a Nash equilibrium as β → 0
    for beta in (1e-100, 1e-300):  # ~330 and ~1000 rungs: a RecursionError before
        with pytest.raises(RuntimeError, match=rf"nash\(beta={beta:g}\): the regularized equilibrium did not converge"):
            game.nash(beta)


def soft_value_mp(win, ref, beta):
    """β log Σ ref·exp(win/β) − ½ at 60 digits (independent of the float64 formulas), with the
    float64 row of π_ref renormalized exactly (its rounding off 1 would be amplified by β)."""
    mpmath.mp.dps = 60
    norm = mpmath.fsum(mpmath.mpf(r) for r in ref)
    total = mpmath.fsum(mpmath.mpf(r) / norm * mpmath.exp(mpmath.mpf(w) / beta) for w, r in zip(win, ref, strict=True))
    return beta * mpmath.log(total) - mpmath.mpf("0.5")


@pytest.mark.parametrize("beta", [1e3, 1e9, 1e12, 1e15])
def test_huge_beta_matches_high_precision_and_the_equilibrium_is_unexploitable(game, beta):
    win = game.win_rates(game.ref)
    expected = sum(float(soft_value_mp(w, r, mpmath.mpf(beta))) * p
                   for w, r, p in zip(win, game.ref, game.rho, strict=True))
    # ≈ Var_ref(win)/(2β); float64 rounds Σ π_ref·win − ½ at ~1e-17 per context
    assert game.exploitability(game.ref, beta) == pytest.approx(expected, rel=1e-3, abs=2e-16)
    assert game.exploitability(game.nash(beta), beta) < 1e-15  # was 0.53 at 1e12


def test_beta_past_float64_resolution_is_pi_ref(game):
    assert np.array_equal(game.nash(1e17), game.ref)
    assert game.exploitability(game.nash(1e300), 1e300) < 1e-15
    assert game.exploitability(game.nash(0.0)) >= 0.0  # each context's gap is clipped at 0


def test_kl_divergence_in_log_space():
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.4, 0.4, 0.2])
    assert kl_divergence(np.log(p), np.log(q)) == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-14)
    eps = 1e-9  # near p = q the terms are second order: Σ p ℓ would lose them to rounding
    q2 = np.array([0.5 + eps, 0.3 - eps, 0.2])
    mpmath.mp.dps = 50
    exact = float(sum(mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b)) for a, b in zip(p, q2, strict=True)))
    assert kl_divergence(np.log(p), np.log(q2)) == pytest.approx(exact, rel=1e-5)
    # q far below float64's range (log q = −1e4): finite, not inf
    expected = 1e-30 * (np.log(1e-30) + 1e4 - 1)  # p log(p/q) summed, q = (e^-1e4, 1)
    assert kl_divergence(np.log([1e-30, 1 - 1e-30]), np.array([-1e4, 0.0])) == pytest.approx(expected, rel=1e-9)
    assert kl_divergence(np.log([0.5, 0.5]), np.array([-np.inf, 0.0])) == np.inf
    assert kl_divergence(np.array([-np.inf, 0.0]), np.log([0.5, 0.5])) == pytest.approx(np.log(2))
