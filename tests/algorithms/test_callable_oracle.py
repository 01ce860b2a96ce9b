"""A game made from a Python callable: P(y ≻ y' | x) = preference(x, tokens, tokens2) over the
sequences a token policy samples (a :class:`~prefzoo.envs.token.TokenOracle`, no exact services).

The sample-mode algorithms train on it with no change to ``algorithms/``; the test judges them with
a dense P that it builds itself, by looping over every pair of sequences it lists on its own and
calling the same callable (the game never builds one).
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from scipy.special import expit

import prefzoo
from prefzoo.envs.token import TokenOracle

V, L, X = 4, 3, 2


def ones_minus_length(x, tokens, tokens2):
    """Bradley–Terry on a score that likes token 1 and (in context 1) short answers."""
    def score(ctx, rows):
        content = np.cumprod((rows >= 1) & (rows < V), axis=1).astype(bool)
        ones = ((rows == 1) & content).sum(1)
        return 1.5 * ones - 0.7 * ctx * content.sum(1)

    return expit(score(x, tokens) - score(x, tokens2))


def listed_sequences():
    """Every sequence as a padded token row, by explicit loops (short-lex, as the game indexes them)."""
    rows = []
    for k in range(L + 1):
        for content in itertools.product(range(1, V), repeat=k):
            rows.append(list(content) + ([0] if k < L else []) + [V] * (L - k - 1))
    return np.array(rows)


def dense_p():
    rows = listed_sequences()
    S = len(rows)
    P = np.empty((X, S, S))
    for x in range(X):
        for i in range(S):
            P[x, i] = ones_minus_length(np.full(S, x), np.repeat(rows[i:i + 1], S, 0), rows)
    return P


def callable_env():
    return gym.make("prefzoo/TokenGame-v0", preference=ones_minus_length, n_contexts=X, vocab_size=V, max_length=L)


def test_the_callable_is_the_oracle_counted_and_seeded():
    game = callable_env().unwrapped.game
    assert isinstance(game, TokenOracle) and game.responses == "tokens" and not game.exact and game.listed
    rows, P = listed_sequences(), dense_p()
    np.testing.assert_array_equal(game.sequences.tokens, rows)
    rng = np.random.default_rng(0)
    x, y, y2 = rng.integers(X, size=500), rng.integers(len(rows), size=500), rng.integers(len(rows), size=500)
    np.testing.assert_allclose(game.prob(x, y, y2), P[x, y, y2], rtol=0, atol=1e-15)
    assert game.exact_calls == 500 and game.queries == 0
    wins = game.compare(np.zeros(40_000, int), np.full(40_000, 1), np.full(40_000, 0), np.random.default_rng(1))
    assert game.queries == 40_000
    assert abs(wins.mean() - P[0, 1, 0]) <= 4 * np.sqrt(P[0, 1, 0] * (1 - P[0, 1, 0]) / 40_000)
    again = game.compare(np.zeros(40_000, int), np.full(40_000, 1), np.full(40_000, 0), np.random.default_rng(1))
    np.testing.assert_array_equal(wins, again)  # same generator, same outcomes


@pytest.mark.parametrize("name, hyperparams", [
    ("wind", {"beta": 0.1, "eta": 2.0, "lr": 0.01, "batch_size": 256, "grad_steps": 10}),
    ("online_dpo", {"beta": 0.1, "lr": 0.01, "batch_size": 256, "grad_steps": 4}),
    ("grpo", {"beta": 0.0, "lr": 0.01, "batch_size": 64}),
    ("sppo", {"eta": 2.0, "k": 3, "lr": 0.01, "batch_size": 128, "grad_steps": 10}),  # last iterate
    ("iterative_bon", {"n": 2, "mixing": 0.2, "lr": 0.01, "batch_size": 256, "grad_steps": 10}),  # sampled normalizer
])
def test_sample_algorithms_train_on_a_callable_preference(name, hyperparams):
    env = callable_env()
    game = env.unwrapped.game
    P = dense_p()

    def win_rate_vs_ref(pi):
        return float(np.einsum("x,xi,xij,xj->", game.rho, pi, P, game.ref))

    algo = prefzoo.make_algo(name, env, seed=0, mode="sample", policy="gru", **hyperparams)
    start = win_rate_vs_ref(algo.policy.probs())
    assert start == pytest.approx(0.5, abs=1e-5)  # π_θ starts at π_ref
    algo.learn(15, eval_freq=15)
    end = win_rate_vs_ref(algo.policy.probs())
    assert end >= 0.6, (name, start, end)
    assert algo.queries == game.queries > 0
    evaluation = algo.evaluate()  # no exact metrics: an estimated win rate, checked against the dense P
    assert set(evaluation) == {"est/win_rate_vs_ref", "est/win_rate_vs_ref_se", "cost/queries", "cost/samples",
                               "time/wall_s"}
    assert abs(evaluation["est/win_rate_vs_ref"] - end) < 5 * evaluation["est/win_rate_vs_ref_se"]


def test_algorithms_that_need_exact_services_or_too_many_listed_responses_refuse_it_by_name():
    env = callable_env()
    with pytest.raises(ValueError, match=r"WIND in exact mode reads the game.s exact services .* exact=False, "
                                         r"listed=True with 40 responses per context; algorithms that play it "
                                         r"\(default settings\): \[.*'wind'"):
        prefzoo.make_algo("wind", env, mode="exact")
    exact_normalizer = {"mode": "sample", "policy": "gru", "normalizer": "exact"}
    assert prefzoo.make_algo("iterative_bon", env, **exact_normalizer).game is env.unwrapped.game  # 40: readable
    large = gym.make("prefzoo/TokenGame-v0", preference=ones_minus_length, n_contexts=X, vocab_size=8, max_length=5)
    with pytest.raises(ValueError, match=r"IterativeBoN in sample mode .* reads every response's probability"
                                         r".* 19,608 responses per context"):
        prefzoo.make_algo("iterative_bon", large, **exact_normalizer)
    with pytest.raises(ValueError, match=r"no average iterate .* SPPO keeps the last iterate"):
        prefzoo.make_algo("sppo", large, mode="sample", policy="gru").average_policy_probs()
    with pytest.raises(AttributeError, match=r"nash is an exact service, and this game has none .* pair by pair"):
        env.unwrapped.game.nash(0.1)


def test_a_bad_callable_is_a_clear_error():
    with pytest.raises(ValueError, match=r"preference must be a callable"):
        gym.make("prefzoo/TokenGame-v0", preference=0.5, n_contexts=X, vocab_size=V, max_length=L)

    def outside(x, tokens, tokens2):
        return np.full(len(x), 1.5)

    game = gym.make("prefzoo/TokenGame-v0", preference=outside, n_contexts=X, vocab_size=V, max_length=L).unwrapped.game
    with pytest.raises(ValueError, match=r"preference function 'outside' must return 3 probabilities in \[0, 1\]"):
        game.compare(np.zeros(3, int), np.ones(3, int), np.zeros(3, int))
    assert game.queries == 0
