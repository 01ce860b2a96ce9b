"""PPO (stable-baselines3) on PrefBandit: the shaped reward, the closed-form target, learning
progress on the exact win rate, query accounting, determinism and checkpoint continuation."""

import gymnasium as gym
import numpy as np
import pytest
from scipy.special import logsumexp, rel_entr

import prefzoo
from prefzoo.algorithms.ppo import PPO, RefLogProbReward, kl_best_response

BT = "prefzoo/PrefBandit-v0"


def test_wrapper_adds_beta_log_ref():
    env = RefLogProbReward(gym.make(BT, reward_mode="win_prob"), beta=0.3)
    _, info = env.reset(seed=0)
    _, reward, _, _, info = env.step(2)
    game = env.unwrapped.game
    x = info["context"]
    assert reward == pytest.approx(game.P[x, 2, info["opponent_action"]] + 0.3 * np.log(game.ref[x, 2]))


def test_target_is_the_objectives_maximizer():
    game, beta = gym.make(BT).unwrapped.game, 0.2
    win = game.win_rates(game.ref)
    target = kl_best_response(win, game.ref, beta)

    def objective(pi):
        return (pi * win).sum(1) - beta * rel_entr(pi, game.ref).sum(1)

    np.testing.assert_allclose(objective(target), beta * logsumexp(win / beta, b=game.ref, axis=1), atol=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(20):
        other = rng.dirichlet(np.ones(game.n_actions), size=game.n_contexts)
        assert (objective(other) <= objective(target) + 1e-12).all()


def test_learns_and_counts_queries():
    algo = prefzoo.make_algo("ppo", gym.make(BT), seed=0, n_steps_per_iteration=256)
    before = algo.evaluate()
    after = algo.learn(8).evaluate()
    assert after["cost/queries"] == 8 * 256 == algo.game.queries
    assert after["game/win_rate_vs_ref"] >= before["game/win_rate_vs_ref"] + 0.1, (before, after)
    assert after["game/kl_to_target"] < before["game/kl_to_target"]


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="reward_mode"):
        PPO(gym.make(BT, reward_mode="log_win_rate"))
    with pytest.raises(ValueError, match="beta"):
        PPO(BT, beta=0.0)
    with pytest.raises(ValueError, match="sample"):
        PPO(BT, mode="exact")


def test_seeded_and_resumable(tmp_path):
    def build():
        return prefzoo.make_algo("ppo", gym.make(BT), seed=3, n_steps_per_iteration=64, n_epochs=2)

    straight = build().learn(4)
    build().learn(2).save(tmp_path / "ckpt.pt")
    resumed = build().load(tmp_path / "ckpt.pt").learn(2)
    np.testing.assert_array_equal(resumed.policy_probs(), straight.policy_probs())
    assert resumed.queries == straight.queries == 4 * 64
    np.testing.assert_array_equal(build().learn(4).policy_probs(), straight.policy_probs())
    assert build().learn(4).evaluate()["game/win_rate_vs_ref"] == straight.evaluate()["game/win_rate_vs_ref"]
