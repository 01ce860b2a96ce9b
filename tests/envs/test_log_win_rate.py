"""The log-win-rate game (prefzoo.envs.log_win_rate): the closed-form exploitability against an
independent best-response search (scipy over the simplex, payoffs written out with plain loops),
Theorem 1 on a small game (exact iterative-BoN limit, exploitability <= 1e-8), the win rates
against their definitions, and the refusals."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

import prefzoo
from prefzoo.algorithms.iterative_bon import best_of_n
from prefzoo.envs import log_win_rate as lwr
from prefzoo.envs.game import make_game


# ---------------------------------------------------------------- independent reference code
def win_rate_loops(P, opp, y, ties):
    """w(y; π') from the definitions, one loop per opponent response."""
    strict = sum(opp[j] * (P[y, j] if P[y, j] != 0.5 else 0.0) for j in range(len(opp)))
    tie = sum(opp[j] for j in range(len(opp)) if P[y, j] == 0.5)
    if ties == "inclusive":
        return strict + tie
    return strict + 0.5 * tie  # N = 2, uniform tie-break: the tie-split win rate P(y ≻ π')


def payoff_loops(P, ref, sigma, opp, beta, ties="uniform"):
    """u_β(σ; π') for one context, plain Python."""
    value = 0.0
    for y in range(len(sigma)):
        if sigma[y] > 0:
            value += sigma[y] * np.log(win_rate_loops(P, opp, y, ties))
            value -= beta * sigma[y] * np.log(sigma[y] / ref[y])
    return value


def searched_gap(P, ref, pi, beta, ties="uniform"):
    """max_σ u(σ; π) − u(π; π) by a simplex grid (3 actions) polished by scipy from the best
    grid points and from π_ref: independent of the closed form."""
    def neg(z):
        sigma = np.exp(z - z.max())
        return -payoff_loops(P, ref, sigma / sigma.sum(), pi, beta, ties)

    grid = [np.array([a, b, 1 - a - b]) for a in np.linspace(0, 1, 41) for b in np.linspace(0, 1 - a, 41)]
    grid = [g for g in grid if g.min() >= 0]
    scores = [payoff_loops(P, ref, np.clip(g, 0, None) / g.sum(), pi, beta, ties) for g in grid]
    starts = [grid[i] for i in np.argsort(scores)[-3:]] + [ref]
    best = max(scores)
    for s in starts:
        res = minimize(neg, np.log(np.clip(s, 1e-6, None)), method="BFGS", options={"gtol": 1e-12})
        best = max(best, -res.fun)
    return best - payoff_loops(P, ref, pi, pi, beta, ties)


def small_game(family, seed=0, contexts=2):
    return make_game(family, n_contexts=contexts, n_actions=3, seed=seed)


def exact_bon_limit(game, n, alpha, iterations=5000):
    """The exact iterative-BoN limit through the shipped algorithm (exact mode)."""
    algo = prefzoo.make_algo("iterative_bon", prefzoo_env(game), seed=0, mode="exact", n=n, mixing=alpha)
    algo.learn(iterations, eval_freq=iterations)
    return algo.policy_probs()


def prefzoo_env(game):
    import gymnasium as gym

    env = gym.make("prefzoo/PrefBandit-v0", n_contexts=game.n_contexts, n_actions=game.n_actions)
    env.unwrapped.game = game
    return env


# ---------------------------------------------------------------- the closed form vs the search
@pytest.mark.parametrize("ties", ["uniform", "inclusive"])
@pytest.mark.parametrize("beta", [0.3, 2.0])
def test_closed_form_exploitability_matches_best_response_search(ties, beta):
    """Positive control: on random policies the search finds what the closed form says."""
    game = small_game("cyclic", seed=3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        pi = rng.dirichlet(np.ones(3), size=2)
        searched = [searched_gap(game.P[x], game.ref[x], pi[x], beta, ties) for x in range(2)]
        closed = lwr.best_response(game.P, game.ref, pi, beta, 2, ties)["gap"]
        np.testing.assert_allclose(closed, searched, atol=1e-8)
        assert lwr.exploitability(game.P, game.ref, game.rho, pi, beta, 2, ties) == pytest.approx(
            game.rho @ np.array(searched), abs=1e-8)
        assert min(searched) > 1e-4  # random policies are exploitable: the test can fail


@pytest.mark.parametrize("family,alpha", [("bt", 0.2), ("bt", 0.6), ("reward_order", 0.7), ("cyclic", 0.5)])
def test_theorem1_exact_bon_limit_is_a_nash_equilibrium(family, alpha):
    """N = 2, β = α/(1−α): the searched exploitability of the exact BoN limit is <= 1e-8."""
    game = small_game(family)
    pi = exact_bon_limit(game, 2, alpha)
    beta = alpha / (1 - alpha)
    for x in range(game.n_contexts):
        gap = searched_gap(game.P[x], game.ref[x], pi[x], beta)
        assert -1e-10 <= gap <= 1e-8, (x, gap)
    assert abs(lwr.exploitability(game.P, game.ref, game.rho, pi, beta)) <= 1e-12


def test_theorem1_n4_on_a_reward_order_against_enumerated_best_of_n():
    """N = 4, reward order with ties: w_N from an enumeration of all N-tuples (uniform tie-break)
    gives the game; the BoN limit is its equilibrium (best response by scipy search)."""
    reward = np.array([0.0, 1.0, 1.0, 2.0])
    P = ((reward[:, None] > reward[None]) + 0.5 * (reward[:, None] == reward[None]))[None]
    ref = np.array([[0.4, 0.3, 0.2, 0.1]])
    from prefzoo.envs.game import PreferenceGame

    game = PreferenceGame(P, ref, rewards=reward[None])
    n, alpha = 4, 0.85
    beta = alpha / ((1 - alpha) * (n - 1))
    pi = exact_bon_limit(game, n, alpha)[0]

    def enumerated_bon(p):
        law = np.zeros(4)
        for tup in itertools.product(range(4), repeat=n):
            top = max(reward[list(tup)])
            winners = [y for y in tup if reward[y] == top]
            for y in winners:
                law[y] += np.prod(p[list(tup)]) / len(winners)
        return law

    w = (enumerated_bon(pi) / (n * pi)) ** (1 / (n - 1))  # BoN_N = N·π·w_N^{N−1}
    np.testing.assert_allclose(np.exp(lwr.log_win_rates(P, pi[None], n)[0]), w, rtol=1e-12)

    def neg(z):
        s = np.exp(z - z.max())
        s /= s.sum()
        return -(s @ np.log(w) - beta * np.sum(s * np.log(s / ref[0])))

    best = max(-minimize(neg, np.log(s0), method="BFGS", options={"gtol": 1e-12}).fun
               for s0 in (ref[0], pi, np.full(4, 0.25)))
    on_policy = pi @ np.log(w) - beta * np.sum(pi * np.log(pi / ref[0]))
    assert -1e-10 <= best - on_policy <= 1e-8


def test_no_mixing_limit_is_a_pure_strategy_equilibrium():
    """α = 0 (β = 0) on a transitive game: brute force over pure strategies."""
    game = small_game("bt")
    from prefzoo.algorithms.iterative_bon import bon_step

    pi = game.ref.copy()
    for _ in range(3000):
        pi = bon_step(pi, np.log(game.ref), game.P, 2, 0.0)
    for x in range(game.n_contexts):
        values = [np.log(win_rate_loops(game.P[x], pi[x], y, "uniform")) for y in range(3)]
        own = sum(pi[x, y] * values[y] for y in range(3) if pi[x, y] > 0)
        assert max(values) - own <= 1e-8
    assert lwr.exploitability(game.P, game.ref, game.rho, pi, 0.0) <= 1e-8


# ---------------------------------------------------------------- win rates and edge cases
def test_win_rates_match_their_definitions():
    game = make_game("reward_order", n_contexts=3, n_actions=5, seed=1)
    pi = np.random.default_rng(1).dirichlet(np.ones(5), size=3)
    for x in range(3):
        for y in range(5):
            for ties in ("uniform", "inclusive"):
                assert np.exp(lwr.log_win_rates(game.P, pi, 2, ties)[x, y]) == pytest.approx(
                    win_rate_loops(game.P[x], pi[x], y, ties), abs=1e-14)
    stochastic = make_game("cyclic", n_contexts=2, n_actions=4, seed=0)
    pi2 = stochastic.ref
    np.testing.assert_allclose(np.exp(lwr.log_win_rates(stochastic.P, pi2, 2)), stochastic.win_rates(pi2),
                               atol=1e-15)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_uniform_win_rate_is_the_best_of_n_identity(n):
    """BoN_N(π) = N·π·w_N^{N−1} against the closed form of algorithms.best_of_n (ties, a zero)."""
    pi = np.array([0.05, 0.2, 0.0, 0.15, 0.3, 0.1, 0.2])
    reward = np.array([1.0, 2.0, 2.0, 0.0, 1.0, 2.0, 1.0])
    P = ((reward[:, None] > reward[None]) + 0.5 * (reward[:, None] == reward[None]))[None]
    w = np.exp(lwr.log_win_rates(P, pi[None], n)[0])
    np.testing.assert_allclose(n * pi * w ** (n - 1), best_of_n(pi, reward, n), atol=1e-15)


def test_log_win_rate_is_finite_for_tiny_masses_and_inclusive_is_the_large_n_limit():
    P = np.array([[[0.5, 0.0], [1.0, 0.5]]])
    pi = np.array([[1e-300, 1 - 1e-300]])
    lw = lwr.log_win_rates(P, pi, 4)
    assert np.isfinite(lw).all() and lw[0, 0] == pytest.approx(np.log(1e-300) + np.log(0.25) / 3)
    pi = np.array([[0.3, 0.7]])
    big = lwr.log_win_rates(P, pi, 400)
    np.testing.assert_allclose(big, lwr.log_win_rates(P, pi, 2, "inclusive"), atol=0.02)


def test_exploitability_is_zero_at_the_gibbs_fixed_point_and_refusals():
    game = small_game("bt")
    br = lwr.best_response(game.P, game.ref, game.ref, 1.0)
    assert (br["gap"] >= 0).all() and np.allclose(br["policy"].sum(1), 1)
    with pytest.raises(ValueError, match="reward order"):
        lwr.log_win_rates(game.P, game.ref, 3)
    with pytest.raises(ValueError, match="ties"):
        lwr.log_win_rates(game.P, game.ref, 2, "split")
    with pytest.raises(ValueError, match="n must"):
        lwr.log_win_rates(game.P, game.ref, 1)
    with pytest.raises(ValueError, match="beta"):
        lwr.exploitability(game.P, game.ref, game.rho, game.ref, -1.0)
