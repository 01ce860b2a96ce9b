"""J-BOND: the crude reward, the EMA anchor, query accounting, improvement over π_ref and
determinism."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import prefzoo
from prefzoo.algorithms.jbond import crude_reward


def build(env_id="prefzoo/PrefBandit-v0", seed=0, **kw):
    env = gym.make(env_id, n_contexts=8, n_actions=6, seed=0)
    return prefzoo.make_algo("jbond", env, seed=seed, **{"lr": 0.05, "grad_steps": 5, "gamma": 0.1, **kw})


def numbers(algo):
    return {k: v for k, v in algo.evaluate().items() if k != "time/wall_s"}


def test_crude_reward_penalizes_only_losing_to_both():
    beats_1 = np.array([1.0, 1.0, 0.0, 0.0])
    beats_2 = np.array([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(crude_reward(beats_1, beats_2), [0, 0, 0, -np.log(16)])


def test_anchor_is_an_ema_of_the_policy_and_costs_are_counted():
    algo = build(batch_size=32, gamma=0.25)
    before = [p.detach().clone() for p in algo.anchor.parameters()]
    algo.learn(1)
    for old, anchor, param in zip(before, algo.anchor.parameters(), algo.policy.parameters(), strict=True):
        torch.testing.assert_close(anchor, 0.75 * old + 0.25 * param)
    assert algo.queries == 32 * 3 and algo.samples == 32 * 3
    assert algo.target_policy() is None


def test_improves_win_rate_over_reference():
    algo = build().learn(200, eval_freq=200)
    metrics = algo.evaluate()
    assert metrics["game/win_rate_vs_ref"] >= 0.65
    assert metrics["game/exploitability"] <= 0.2 * algo.game.exploitability(algo.game.ref)


def test_same_seed_same_metrics_other_seed_differs():
    a, b = build(seed=4).learn(5), build(seed=4).learn(5)
    assert numbers(a) == numbers(b)
    np.testing.assert_array_equal(a.policy_probs(), b.policy_probs())
    assert not np.array_equal(a.policy_probs(), build(seed=5).learn(5).policy_probs())


def test_save_load_restores_the_anchor(tmp_path):
    reference = build(seed=1, batch_size=16).learn(4)
    saved = build(seed=1, batch_size=16).learn(2)
    saved.save(tmp_path / "jbond.pt")
    resumed = build(seed=1, batch_size=16).load(tmp_path / "jbond.pt").learn(2)
    for x, y in zip(resumed.anchor.parameters(), reference.anchor.parameters(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert numbers(resumed) == numbers(reference)


def test_validation():
    with pytest.raises(ValueError, match="supports mode"):
        build(mode="exact")
    with pytest.raises(ValueError, match="beta_j"):
        build(beta_j=1.5)
    with pytest.raises(ValueError, match="gamma"):
        build(gamma=0.0)
