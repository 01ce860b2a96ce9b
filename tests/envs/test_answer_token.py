"""AnswerTokenGame: exact services by dynamic programming, checked against independent computations —
every sequence listed and the dense game built from the answers (PreferenceGame's LP / Newton
solvers, closed-form exploitability), Monte Carlo counts of exact samples, a chi-square test."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import chisquare

import prefzoo
from prefzoo.envs.answer_token import AnswerTokenGame, CandidatePolicy
from prefzoo.envs.game import PreferenceGame

V, L, X, K = 4, 5, 3, 4  # 1,024 sequences per prompt


@pytest.fixture(scope="module", params=["bt", "cyclic"])
def small(request):
    """(game, every sequence [S, L], the dense game over them, table of a policy)."""
    game = AnswerTokenGame(request.param, n_contexts=X, vocab_size=V, max_length=L, n_states=3, n_answers=K, seed=1)
    rows = np.array(list(itertools.product(range(V), repeat=L)))

    def table(policy):
        return np.stack([np.exp(policy.log_prob(np.full(len(rows), x), rows)) for x in range(X)])

    answers = np.array([sum(game.weights[v] for v in row) % K for row in rows])  # a(y), by hand
    dense = PreferenceGame(game.Q[:, answers][:, :, answers], table(game.reference), game.rho)
    return game, rows, answers, dense, table


def test_answers_and_the_reference_answer_marginal_match_the_listed_game(small):
    game, rows, answers, dense, table = small
    np.testing.assert_array_equal(game.answers(np.zeros(len(rows), int), rows), answers)
    np.testing.assert_allclose(dense.ref.sum(1), 1.0, atol=1e-12)
    mu = np.stack([np.bincount(answers, weights=dense.ref[x], minlength=K) for x in range(X)])
    np.testing.assert_allclose(game.answer_game.ref, mu, atol=1e-12)
    np.testing.assert_array_equal(game.answer_game.P, game.Q)


@pytest.mark.parametrize("beta", [0.05, 0.3, 2.0])
def test_nash_is_the_dense_games_regularized_equilibrium(small, beta):
    game, rows, answers, dense, table = small
    pi = game.nash(beta)
    np.testing.assert_allclose(table(pi), dense.nash(beta), rtol=0, atol=1e-9)
    assert game.exploitability(pi, beta) < 1e-10 and dense.exploitability(table(pi), beta) < 1e-9


def test_unregularized_nash_and_exploitability_of_any_tilt_match_the_dense_game(small):
    game, rows, answers, dense, table = small
    assert game.exploitability(game.nash(0.0)) < 1e-10
    assert dense.exploitability(table(game.nash(0.0))) < 1e-9
    tilt = game.tilted(np.random.default_rng(0).normal(size=(X, K)))
    for beta in (0.0, 0.1, 1.0):
        assert game.exploitability(tilt, beta) == pytest.approx(dense.exploitability(table(tilt), beta), abs=1e-9)
    kl = np.array([np.sum(p * np.log(p / r)) for p, r in zip(table(tilt), dense.ref, strict=True)])
    assert game.kl(tilt, game.reference) == pytest.approx(dense.expectation(kl), abs=1e-9)
    metrics = game.evaluate(tilt, np.random.default_rng(0))
    assert metrics["game/win_rate_vs_ref"] == pytest.approx(dense.expectation(dense.win_rate(table(tilt), dense.ref)))


def test_a_candidate_policy_has_the_dense_games_exploitability_and_kl(small):
    """A distribution over M = 40 drawn rows (duplicates among them) as a dense [X, Y] table: its
    answer marginal, KL to π_ref and exploitability at β are the dense game's."""
    game, rows, answers, dense, table = small
    rng = np.random.default_rng(0)
    drawn = rng.integers(len(rows), size=(X, 40))
    drawn[:, 1] = drawn[:, 0]  # a row drawn twice counts once, with both weights
    probs = rng.dirichlet(np.ones(40), size=X)
    policy = CandidatePolicy(game, rows[drawn], probs)
    dense_table = np.stack([np.bincount(drawn[x], weights=probs[x], minlength=len(rows)) for x in range(X)])
    mu = np.stack([np.bincount(answers, weights=dense_table[x], minlength=K) for x in range(X)])
    np.testing.assert_allclose(policy.answer_marginal(), mu, atol=1e-12)
    for beta in (0.0, 0.1, 1.0):
        assert game.exploitability(policy, beta) == pytest.approx(dense.exploitability(dense_table, beta), abs=1e-9)
    assert game.kl(policy, game.reference) == pytest.approx(dense.expectation(dense.kl(dense_table, dense.ref)))
    nu_star = game.nash(0.1).answer_marginal()
    expected = dense.expectation(np.sum(nu_star * np.log(nu_star / mu), axis=1))
    assert game.answer_kl(game.nash(0.1), policy) == pytest.approx(expected, abs=1e-9)
    assert np.isin(policy.sample(np.zeros(500, int), rng), rows[drawn[0]]).all(axis=1).all()


def test_reference_answer_marginal_against_monte_carlo_of_its_exact_samples():
    game = AnswerTokenGame("cyclic", n_contexts=2, seed=3)  # V = L = 16: 1.8e19 sequences per prompt
    n = 20_000
    tokens = game.reference.sample(np.zeros(n, int), np.random.default_rng(0))
    counts = np.bincount(game.answers(np.zeros(n, int), tokens), minlength=game.n_answers)
    mu = game.answer_game.ref[0]
    se = np.sqrt(mu * (1 - mu) / n)
    assert np.all(np.abs(counts / n - mu) < 4 * se + 1e-12)


def test_exact_samples_of_the_equilibrium_have_its_answer_marginal():
    game = AnswerTokenGame("cyclic", n_contexts=2, seed=3)
    pi = game.nash(0.1)
    n = 20_000
    tokens = pi.sample(np.ones(n, int), np.random.default_rng(1))
    counts = np.bincount(game.answers(np.ones(n, int), tokens), minlength=game.n_answers)
    nu = game.answer_game.nash(0.1)[1]
    np.testing.assert_allclose(pi.answer_marginal()[1], nu, atol=1e-12)
    assert chisquare(counts, n * nu).pvalue > 1e-3
    log_p = pi.log_prob(np.ones(n, int), tokens)  # π*_β = π_ref·exp(g(a)/β)/Z, checked row by row
    g = game.answer_game.win_rates(game.answer_game.nash(0.1))[1]
    log_z = np.log(np.sum(game.answer_game.ref[1] * np.exp(g / 0.1)))
    expected = game.reference.log_prob(np.ones(n, int), tokens) + g[game.answers(np.ones(n, int), tokens)] / 0.1 - log_z
    np.testing.assert_allclose(log_p, expected, atol=1e-9)


def test_the_regularized_best_response_to_the_equilibrium_is_itself_at_1e19_sequences():
    game = AnswerTokenGame("mixed", seed=0)
    assert game.vocab_size**game.max_length > 1e19
    assert game.exploitability(game.nash(0.1), 0.1) < 1e-10
    assert game.exploitability(game.reference, 0.1) > 1e-3  # π_ref is not the equilibrium


def test_the_env_counts_its_duels_and_reports_the_answers():
    env = gym.make("prefzoo/AnswerTokenGame-v0", n_contexts=2, vocab_size=5, max_length=4, n_answers=3)
    game = env.unwrapped.game
    env.reset(seed=0)
    for t in range(4):
        _, reward, terminated, _, info = env.step(t + 1)
    assert terminated and game.queries == 1 and reward in (0.0, 1.0)
    assert info["answer"] == game.answers(np.zeros(1, int), np.array([[1, 2, 3, 4]]))[0]
    assert info["win_prob"] == pytest.approx(game.Q[info["context"], info["answer"], info["opponent_answer"]])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"n_answers must be at most max_length \+ 1 = 3"):
        AnswerTokenGame(max_length=2, n_answers=4)
    with pytest.raises(ValueError, match="vocab_size must be"):
        AnswerTokenGame(vocab_size=1)
    with pytest.raises(ValueError, match="a policy table has X·L·S·K·V entries"):
        AnswerTokenGame(n_contexts=1000, max_length=1000, n_states=100, n_answers=100)
    game = AnswerTokenGame(n_contexts=2, vocab_size=4, max_length=4, n_answers=3)
    with pytest.raises(ValueError, match="beta must be"):
        game.nash(-0.1)
    with pytest.raises(TypeError, match="policy must be a FiniteStatePolicy or CandidatePolicy of this game"):
        game.exploitability(np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"tokens must be integer rows \[n, 4\] of ids in \[0, 4\)"):
        game.answers(np.zeros(1, int), np.array([[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"rows must be token rows \[X, M, L\] with X = 2"):
        CandidatePolicy(game, np.zeros((3, 5, 4), int), np.full((3, 5), 0.2))
    with pytest.raises(ValueError, match="probs"):
        CandidatePolicy(game, np.zeros((2, 5, 4), int), np.full((2, 5), 0.3))
    with pytest.raises(ValueError, match=r"responses must be handles in \[0, 0\)"):
        game.compare(np.zeros(1, int), np.zeros(1, int), np.zeros(1, int))
    with pytest.raises(ValueError, match="BF16GRUSequencePolicy enumerates the game.s token sequences.*"
                                         "policy=.automaton. for exact metrics or .gru."):
        prefzoo.make_algo("wind", gym.make("prefzoo/AnswerTokenGame-v0", game=game), mode="sample", policy="gru_bf16")
