"""PreferenceGame: equilibria, exploitability, oracle counting, seeding and input validation.

Every check compares the library against an independent computation written here (explicit
loops over responses, a grid over the simplex, hand-built games with known answers), never
against the same code path twice.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from prefzoo.envs.game import FAMILIES, PreferenceGame, make_game

SEEDS = (0, 1, 2)


# ---------------------------------------------------------------- independent reference code
def win_rates_loop(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """P(y ≻ π | x) by explicit sums over y' (no einsum, no matmul)."""
    X, Y, _ = P.shape
    out = np.zeros((X, Y))
    for x in range(X):
        for y in range(Y):
            out[x, y] = sum(P[x, y, j] * pi[x, j] for j in range(Y))
    return out


def brute_exploitability(P: np.ndarray, rho: np.ndarray, pi: np.ndarray) -> float:
    """β = 0: ρ-weighted best response over pure strategies, minus ½."""
    w = win_rates_loop(P, pi)
    return float(sum(rho[x] * (max(w[x]) - 0.5) for x in range(P.shape[0])))


def simplex_grid(n: int) -> np.ndarray:
    """All points (i, j, n−i−j)/n of the 3-simplex, strictly positive ones only."""
    i, j = np.meshgrid(np.arange(1, n), np.arange(1, n), indexing="ij")
    keep = i + j < n
    i, j = i[keep], j[keep]
    return np.stack([i, j, n - i - j], axis=1) / n


def rps(a: float = 1.0, b: float = 1.0, c: float = 1.0) -> PreferenceGame:
    """Generalized rock-paper-scissors: P = ½ + A/2, A = [[0, a, −b], [−a, 0, c], [b, −c, 0]].

    Its unique Nash equilibrium is ∝ (c, b, a) (A·(c, b, a) = 0 and the payoffs are full-cycle).
    """
    A = np.array([[0.0, a, -b], [-a, 0.0, c], [b, -c, 0.0]])
    return PreferenceGame((0.5 + A / 2)[None], np.full((1, 3), 1 / 3))


def random_policy(game: PreferenceGame, rng: np.random.Generator) -> np.ndarray:
    return rng.dirichlet(np.ones(game.n_actions), size=game.n_contexts)


# ---------------------------------------------------------------- β = 0 equilibrium (LP)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lp_nash_is_unexploitable(family, seed):
    game = make_game(family, n_contexts=6, n_actions=5, seed=seed)
    pi = game.nash(0.0)
    assert np.allclose(pi.sum(axis=1), 1.0) and pi.min() >= 0
    assert brute_exploitability(game.P, game.rho, pi) <= 1e-9
    assert abs(game.exploitability(pi)) <= 1e-9
    # an arbitrary policy is exploitable in the same metric (the check can fail)
    assert brute_exploitability(game.P, game.rho, game.ref) > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_lp_nash_on_bt_is_the_best_response(seed):
    game = make_game("bt", seed=seed)
    pi = game.nash(0.0)
    best = np.argmax(game.rewards, axis=1)
    np.testing.assert_allclose(pi[np.arange(game.n_contexts), best], 1.0, atol=1e-9)


def test_rock_paper_scissors_known_answers():
    game = rps()
    np.testing.assert_allclose(game.nash(0.0), np.full((1, 3), 1 / 3), atol=1e-9)
    for y in range(3):
        pure = np.eye(3)[y][None]
        assert game.exploitability(pure) == pytest.approx(0.5, abs=1e-12)
    assert game.exploitability(np.full((1, 3), 1 / 3)) == pytest.approx(0.0, abs=1e-12)


def test_weighted_rock_paper_scissors_known_answer():
    game = rps(a=0.2, b=0.6, c=1.0)  # Nash ∝ (c, b, a) = (1.0, 0.6, 0.2)
    np.testing.assert_allclose(game.nash(0.0)[0], np.array([1.0, 0.6, 0.2]) / 1.8, atol=1e-9)


# ---------------------------------------------------------------- β > 0 equilibrium
@pytest.mark.parametrize("family", ["bt", "cyclic", "mixed"])
@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_regularized_nash_fixed_point(family, beta):
    game = make_game(family, n_contexts=5, n_actions=6, seed=3)
    pi = game.nash(beta)
    w = win_rates_loop(game.P, pi)
    logits = np.log(game.ref) + w / beta
    target = np.exp(logits - logits.max(axis=1, keepdims=True))
    target /= target.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pi, target, rtol=0, atol=1e-9)
    assert abs(game.exploitability(pi, beta)) <= 1e-9
    assert game.exploitability(game.ref, beta) > 1e-6


def test_regularized_nash_on_reward_order():
    game = make_game("reward_order", seed=4)
    pi = game.nash(0.1)
    w = win_rates_loop(game.P, pi)
    target = game.ref * np.exp(w / 0.1)
    np.testing.assert_allclose(pi, target / target.sum(axis=1, keepdims=True), atol=1e-9)


def test_regularized_nash_tends_to_ref_and_to_nash():
    game = make_game("cyclic", seed=5)
    assert np.abs(game.nash(1e3) - game.ref).max() < 1e-3
    assert game.exploitability(game.nash(1e-3)) < 5e-3



def nearby_game(game: PreferenceGame, scale: float, seed: int) -> PreferenceGame:
    """``game`` with an antisymmetric perturbation of P of size ``scale`` (a nearby estimate)."""
    noise = scale * np.random.default_rng(seed).normal(size=game.P.shape)
    P = np.clip(game.P + noise - noise.transpose(0, 2, 1), 0.0, 1.0)
    return PreferenceGame(0.5 * (P + 1.0 - P.transpose(0, 2, 1)), game.ref, game.rho)


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_warm_started_nash_is_the_cold_solution_in_fewer_newton_steps(beta):
    """Started from the equilibrium of a nearby game (what estimate-then-solve passes), ``nash``
    returns the cold solution to 1e-9 and, where Newton from π_ref needs several steps, takes fewer
    (counted by the solver: one batched linear solve per step)."""
    game = make_game("cyclic", n_contexts=5, n_actions=40, seed=3)
    start = nearby_game(game, 0.01, seed=1).nash(beta)
    cold, warm = PreferenceGame(game.P, game.ref, game.rho), PreferenceGame(game.P, game.ref, game.rho)
    np.testing.assert_allclose(warm.nash(beta, start=start), cold.nash(beta), rtol=0, atol=1e-9)
    assert 0 < warm.newton_steps[beta] < cold.newton_steps[beta]


def test_nash_from_a_far_start_and_a_bad_start():
    """A far start (rows near pure responses) still gives the cold solution (Newton converges from
    it, or the cold start takes over); a start that is not a policy is an error naming ``start``."""
    game = make_game("cyclic", n_contexts=3, n_actions=6, seed=2)
    cold = PreferenceGame(game.P, game.ref, game.rho).nash(0.1)
    far = np.eye(6)[[0, 1, 2]] * 0.999 + 0.001 / 6
    np.testing.assert_allclose(game.nash(0.1, start=far), cold, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="start"):
        make_game("cyclic", n_contexts=3, n_actions=6, seed=2).nash(0.1, start=np.ones((3, 5)) / 5)


# ---------------------------------------------------------------- closed-form exploitability
@pytest.mark.parametrize("family", FAMILIES)
def test_exploitability_matches_pure_best_response(family):
    game = make_game(family, seed=7)
    rng = np.random.default_rng(0)
    for _ in range(5):
        pi = random_policy(game, rng)
        expected = brute_exploitability(game.P, game.rho, pi)
        assert game.exploitability(pi) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("beta", [0.05, 0.3, 1.0])
def test_regularized_exploitability_matches_simplex_grid(beta):
    """Max over a fine simplex grid of ⟨π', Pπ⟩ − βKL(π'‖π_ref), plus βKL(π‖π_ref) − ½."""
    game = make_game("cyclic", n_contexts=3, n_actions=3, seed=8)
    pi = random_policy(game, np.random.default_rng(1))
    n = 1000
    grid = simplex_grid(n)  # [G, 3]
    w = win_rates_loop(game.P, pi)
    gaps = []
    for x in range(3):
        value = grid @ w[x] - beta * np.sum(grid * np.log(grid / game.ref[x]), axis=1)
        kl_pi = sum(p * np.log(p / r) for p, r in zip(pi[x], game.ref[x], strict=True) if p > 0)
        gaps.append(value.max() + beta * kl_pi - 0.5)
    grid_value = float(game.rho @ np.array(gaps))
    closed = game.exploitability(pi, beta)
    # the grid is a subset of the simplex: it never exceeds the true maximum
    assert grid_value <= closed + 1e-12
    assert closed - grid_value < 2e-4


# ---------------------------------------------------------------- win_rate and kl
def test_win_rate_and_kl_match_loops():
    game = make_game("mixed", seed=9)
    rng = np.random.default_rng(2)
    pi, mu = random_policy(game, rng), random_policy(game, rng)
    X, Y = pi.shape
    expected = [sum(pi[x, i] * mu[x, j] * game.P[x, i, j] for i in range(Y) for j in range(Y))
                for x in range(X)]
    np.testing.assert_allclose(game.win_rate(pi, mu), expected, atol=1e-12)
    np.testing.assert_allclose(game.win_rate(pi, mu) + game.win_rate(mu, pi), 1.0, atol=1e-12)
    kl = [sum(pi[x, y] * np.log(pi[x, y] / mu[x, y]) for y in range(Y)) for x in range(X)]
    np.testing.assert_allclose(game.kl(pi, mu), kl, atol=1e-12)


# ---------------------------------------------------------------- counted oracle
def test_compare_frequencies_match_prob():
    game = make_game("cyclic", seed=10)
    rng = np.random.default_rng(3)
    n = 20_000
    triples = [(0, 0, 1), (1, 2, 3), (3, 5, 4), (7, 1, 1), (5, 4, 0)]
    for x, y, y2 in triples:
        wins = game.compare(np.full(n, x), np.full(n, y), np.full(n, y2), rng)
        p = game.P[x, y, y2]
        se = np.sqrt(p * (1 - p) / n) if 0 < p < 1 else 1e-12
        assert abs(wins.mean() - game.prob(x, y, y2)) <= 4 * se + 1e-12, (x, y, y2)
    # all pairs of one context at once, broadcast: y (column) vs y2 (row)
    Y = game.n_actions
    rows = np.arange(Y)[None, :, None]
    cols = np.arange(Y)[None, None, :] + np.zeros((4000, 1, 1), int)
    draws = game.compare(2, rows, cols, rng)
    freq = draws.mean(axis=0)
    se = np.sqrt(game.P[2] * (1 - game.P[2]) / 4000)
    assert np.all(np.abs(freq - game.P[2]) <= 4 * se + 1e-12)


def test_query_counts_are_exact():
    game = make_game("bt", seed=11)
    assert (game.queries, game.exact_calls) == (0, 0)
    game.compare(0, 1, 2)
    assert (game.queries, game.exact_calls) == (1, 0)
    game.compare(np.arange(4), 1, 2)  # broadcasts to 4 elements
    assert game.queries == 5
    game.compare(np.zeros((3, 7), int), np.ones((3, 1), int), 0)
    assert game.queries == 26
    p = game.prob(np.arange(8)[:, None], np.arange(6)[None], 0)
    assert p.shape == (8, 6)
    assert (game.queries, game.exact_calls) == (26, 48)
    # exact helpers read P directly: they are not oracle calls
    game.win_rate(game.ref, game.ref)
    game.exploitability(game.ref)
    assert (game.queries, game.exact_calls) == (26, 48)


def test_compare_uses_the_given_generator():
    game = make_game("bt", seed=12)
    x, y, y2 = np.zeros(500, int), np.zeros(500, int), np.ones(500, int)
    a = game.compare(x, y, y2, np.random.default_rng(5))
    b = game.compare(x, y, y2, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- seeding
@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_game(family):
    g1, g2, g3 = make_game(family, seed=21), make_game(family, seed=21), make_game(family, seed=22)
    for name in ("P", "ref", "rho", "features"):
        np.testing.assert_array_equal(getattr(g1, name), getattr(g2, name))
        assert not np.array_equal(getattr(g1, name), getattr(g3, name)), name
    if g1.rewards is not None:
        np.testing.assert_array_equal(g1.rewards, g2.rewards)


@pytest.mark.parametrize("family", FAMILIES)
def test_generated_games_are_preference_games(family):
    game = make_game(family, seed=23)
    np.testing.assert_allclose(game.P + game.P.transpose(0, 2, 1), 1.0, rtol=0, atol=4e-16)
    np.testing.assert_array_equal(np.diagonal(game.P, axis1=1, axis2=2), 0.5)
    assert game.P.min() >= 0 and game.P.max() <= 1
    np.testing.assert_allclose(game.ref.sum(axis=1), 1.0)
    assert game.rho.sum() == pytest.approx(1.0)


def test_families_differ_in_transitivity():
    """bt and reward_order have a pure (Condorcet) winner in every context; cyclic does not."""
    def pure_winner(game):
        return np.all((game.P >= 0.5).all(axis=2).any(axis=1))
    assert pure_winner(make_game("bt", seed=0)) and pure_winner(make_game("reward_order", seed=0))
    cyclic = make_game("cyclic", seed=0)
    assert not np.any((cyclic.P >= 0.5).all(axis=2).any(axis=1))
    assert (cyclic.nash(0.0).max(axis=1) < 1 - 1e-6).all()


# ---------------------------------------------------------------- bad input
def test_unknown_family_names_the_expected_ones():
    with pytest.raises(ValueError, match=r"unknown family 'cylic'.*did you mean 'cyclic'"):
        make_game("cylic")


@pytest.mark.parametrize("kwargs, match", [({"n_actions": 1}, "n_actions must be an integer >= 2"),
                                           ({"n_contexts": 2.5}, "n_contexts must be an integer")])
def test_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_game("bt", **kwargs)


def test_bad_preference_tensor():
    with pytest.raises(ValueError, match=r"P \+ P\^T = 1"):
        PreferenceGame(np.full((1, 2, 2), 0.7), np.full((1, 2), 0.5))
    with pytest.raises(ValueError, match=r"shape \[X, Y, Y\]"):
        PreferenceGame(np.full((2, 3), 0.5), np.full((1, 3), 1 / 3))


def bad_policies(game):
    X, Y = game.n_contexts, game.n_actions
    negative = np.full((X, Y), 1 / Y)
    negative[0, :2] = [-0.1, 0.1 + 1 / Y]
    unnormalized = np.full((X, Y), 1 / Y)
    unnormalized[3] *= 1.5
    nan = np.full((X, Y), 1 / Y)
    nan[1, 1] = np.nan
    return [(negative, "non-negative"), (unnormalized, "must sum to 1; row 3"),
            (nan, "NaN"), (np.full((X, Y + 1), 1 / (Y + 1)), r"shape \[X, Y\] = \[8, 6\]"),
            (np.full(Y, 1 / Y), r"shape \[X, Y\]")]


@pytest.mark.parametrize("case", range(5))
def test_policies_that_are_not_distributions(case):
    game = make_game("bt", seed=0)
    bad, match = bad_policies(game)[case]
    ok = game.ref
    calls = [lambda: game.exploitability(bad), lambda: game.exploitability(bad, 0.1),
             lambda: game.win_rate(bad, ok), lambda: game.win_rate(ok, bad),
             lambda: game.kl(bad, ok), lambda: game.kl(ok, bad)]
    for call in calls:
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_oracle_indices_and_beta():
    game = make_game("bt", seed=0)
    with pytest.raises(ValueError, match=r"y must hold integer indices in \[0, 6\)"):
        game.compare(0, 6, 0)
    with pytest.raises(ValueError, match=r"x must hold integer indices in \[0, 8\)"):
        game.prob(-1, 0, 0)
    with pytest.raises(ValueError, match="integer indices"):
        game.compare(0, 1.0, 0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        game.exploitability(game.ref, -0.1)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        game.nash(-1)
    assert (game.queries, game.exact_calls) == (0, 0)


def test_small_games_enumerate():
    """Exhaustive check on every pure profile of a 2-context RPS-like game: the value of a pure
    strategy against itself is ½ and exploitability is the best pure reply."""
    game = make_game("cyclic", n_contexts=2, n_actions=3, seed=30)
    for a, b in itertools.product(range(3), repeat=2):
        pi = np.zeros((2, 3))
        pi[0, a] = pi[1, b] = 1
        expected = (game.rho[0] * (game.P[0, :, a].max() - 0.5)
                    + game.rho[1] * (game.P[1, :, b].max() - 0.5))
        assert game.exploitability(pi) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("field, value, match", [
    ("rho", np.full(2, np.nan), "rho must be finite"),
    ("rho", np.array([0.7, 0.7]), "rho must sum to 1; it sums to 1.4"),
    ("rho", np.array([1.5, -0.5]), "rho must be non-negative"),
    ("rho", np.ones(3) / 3, r"rho must have shape \[2\]"),
    ("features", np.array([[0.0, np.inf], [1.0, 2.0]]), "features must be finite"),
    ("features", np.ones(2), r"features must have shape \[2, any\]"),
    ("rewards", np.array([[0.0, np.nan], [1.0, 2.0]]), "rewards must be finite"),
])
def test_context_weights_features_and_rewards_are_validated(field, value, match):
    """NaN or malformed arrays are refused when the game is built, so no metric is silently NaN and
    ``sample_contexts`` never sees a NaN ρ."""
    P = np.full((2, 2, 2), 0.5)
    ref = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match=match):
        PreferenceGame(P, ref, **{field: value})
    game = PreferenceGame(P, ref, rho=np.array([0.25, 0.75]))
    contexts = game.sample_contexts(40_000, np.random.default_rng(0))
    assert abs(contexts.mean() - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 40_000)


def test_regularized_exploitability_at_a_subnormal_beta_is_the_unregularized_limit():
    """β·log Σ π_ref exp(win/β) → max win as β → 0+: at β = 5e-324 (win/β overflows) the value is the
    β = 0 exploitability, finite; at β = 0.3 it matches the formula summed directly."""
    game = make_game("cyclic", n_contexts=4, n_actions=5, seed=2)
    pi = game.nash(0.2)
    assert game.exploitability(pi, 5e-324) == pytest.approx(game.exploitability(pi, 0.0), abs=1e-15)
    win = np.einsum("xij,xj->xi", game.P, pi)
    direct = 0.3 * np.log((game.ref * np.exp(win / 0.3)).sum(1)) + 0.3 * (pi * np.log(pi / game.ref)).sum(1) - 0.5
    assert game.exploitability(pi, 0.3) == pytest.approx(float(game.rho @ direct), abs=1e-12)
