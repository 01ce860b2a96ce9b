"""SPPO: the exact MWU step, the average iterate's exploitability, the K×K estimate, query
accounting, and the sample mode's exploitability cut on a cyclic game."""

import gymnasium as gym
import numpy as np
import pytest

import prefzoo
from prefzoo.algorithms.sppo import row_mean_win_rates


def make_env(env_id="prefzoo/PrefBandit-Cyclic-v0"):
    return gym.make(env_id, n_contexts=8, n_actions=6, seed=0)


def test_exact_step_is_multiplicative_weights_and_average_is_tracked():
    env = make_env()
    game = env.unwrapped.game
    algo = prefzoo.make_algo("sppo", env, mode="exact", eta=0.7)
    iterates, pi = [], game.ref.copy()
    for _ in range(5):
        unnorm = pi * np.exp(0.7 * np.einsum("xij,xj->xi", game.P, pi))
        pi = unnorm / unnorm.sum(1, keepdims=True)
        iterates.append(pi)
    np.testing.assert_array_equal(algo.average_policy_probs(), game.ref)  # before any step
    algo.learn(5)
    np.testing.assert_allclose(algo.policy_probs(), pi, atol=1e-13)
    np.testing.assert_allclose(algo.average_policy_probs(), np.mean(iterates, axis=0), atol=1e-13)
    metrics = algo.evaluate()
    assert metrics["game/avg_exploitability"] == pytest.approx(game.exploitability(np.mean(iterates, axis=0)))
    assert "game/kl_to_target" not in metrics and "game/reg_exploitability" not in metrics


def test_exact_average_iterate_reaches_low_exploitability_on_a_cyclic_game():
    """MWU self-play: the average iterate is an ε-equilibrium (ε ≤ 0.01), the last iterate is not."""
    env = make_env()
    algo = prefzoo.make_algo("sppo", env, mode="exact", eta=1.0).learn(2000, eval_freq=2000)
    metrics = algo.evaluate()
    assert metrics["game/avg_exploitability"] <= 0.01
    assert metrics["game/exploitability"] > 0.05  # the last iterate keeps cycling


def test_row_mean_includes_self_at_one_half():
    rng = np.random.default_rng(0)
    k = 4
    pairs = rng.random((3, k * (k - 1) // 2))
    est = row_mean_win_rates(pairs, k)
    i, j = np.triu_indices(k, 1)
    for n in range(3):
        full = np.full((k, k), 0.5)
        full[i, j], full[j, i] = pairs[n], 1 - pairs[n]
        np.testing.assert_allclose(est[n], full.mean(1))
    np.testing.assert_allclose(est.mean(1), 0.5)  # antisymmetry: the row means average to ½


def test_sample_mode_query_accounting():
    comparisons = prefzoo.make_algo("sppo", make_env(), mode="sample", k=5, batch_size=8).learn(2)
    assert comparisons.queries == 2 * 8 * 10 and comparisons.samples == 2 * 8 * 5
    probs = prefzoo.make_algo("sppo", make_env(), mode="sample", k=3, batch_size=8, labels="prob")
    before = probs.game.queries
    probs.learn(1)
    assert probs.queries == 8 * 3 and probs.game.queries == before  # exact calls, no Bernoulli draws
    with pytest.raises(ValueError, match="labels"):
        prefzoo.make_algo("sppo", make_env(), labels="bernoulli")
    with pytest.raises(ValueError, match="eta"):
        prefzoo.make_algo("sppo", make_env(), eta=0.0)


def test_sample_mode_cuts_average_exploitability_five_fold():
    """K = 5, comparisons only, 250 iterations × 512 prompts × 10 comparisons (1.28M queries):
    the average iterate's exploitability falls below a fifth of π_ref's."""
    env = make_env()
    game = env.unwrapped.game
    algo = prefzoo.make_algo("sppo", env, seed=0, mode="sample", eta=0.5, batch_size=512, lr=0.05, grad_steps=20)
    algo.learn(250, eval_freq=250)
    assert algo.queries == 250 * 512 * 10
    assert algo.evaluate()["game/avg_exploitability"] <= game.exploitability(game.ref) / 5


def test_same_seed_same_metrics_and_save_load(tmp_path):
    def build():
        return prefzoo.make_algo("sppo", make_env(), seed=2, mode="sample", batch_size=16, grad_steps=3)

    def numbers(algo):
        return {k: v for k, v in algo.evaluate().items() if k != "time/wall_s"}

    reference = build().learn(4)
    assert numbers(reference) == numbers(build().learn(4))
    saved = build().learn(2)
    saved.save(tmp_path / "sppo.pt")
    resumed = build().load(tmp_path / "sppo.pt")
    np.testing.assert_array_equal(resumed.average_policy_probs(), saved.average_policy_probs())
    resumed.learn(2)
    np.testing.assert_array_equal(resumed.average_policy_probs(), reference.average_policy_probs())
    assert numbers(resumed) == numbers(reference)
