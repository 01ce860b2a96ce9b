"""PrefBandit envs: reward modes, oracle counting, self-play opponents, render and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from prefzoo.envs import PrefBanditEnv, PrefBanditVectorEnv, make_game


def vec(num_envs=256, **kwargs):
    kwargs.setdefault("seed", 0)
    return gym.make_vec("prefzoo/PrefBandit-Cyclic-v0", num_envs=num_envs,
                        vectorization_mode="vector_entry_point", **kwargs)


# ---------------------------------------------------------------- reward modes
def test_win_prob_reward_is_the_drawn_duels_probability():
    env = gym.make("prefzoo/PrefBandit-Mixed-v0", reward_mode="win_prob")
    game = env.unwrapped.game
    env.reset(seed=0)
    for t in range(50):
        action = t % game.n_actions
        _, info = env.reset()
        x = info["context"]
        _, reward, terminated, _, info = env.step(action)
        assert terminated and info["context"] == x
        assert reward == game.P[x, action, info["opponent_action"]] == info["win_prob"]
    assert game.queries == 0 and game.exact_calls == 50


def test_log_win_rate_reward_is_log_of_the_expected_win_rate():
    env = gym.make("prefzoo/PrefBandit-Cyclic-v0", reward_mode="log_win_rate")
    game = env.unwrapped.game
    Y = game.n_actions
    for t in range(30):
        _, info = env.reset(seed=t)
        x, action = info["context"], (3 * t) % Y
        _, reward, _, _, _ = env.step(action)
        expected = np.log(sum(game.P[x, action, j] * game.ref[x, j] for j in range(Y)))
        assert reward == pytest.approx(expected, abs=1e-12)
    assert game.queries == 0 and game.exact_calls == 30 * Y


def test_comparison_reward_mean_matches_win_prob():
    """Monte Carlo: the Bernoulli reward averages to the exact win probability of each duel
    and, over opponents, to P(a ≻ π_ref | x)."""
    env = vec(num_envs=2048)
    game = env.unwrapped.game
    _, info = env.reset(seed=1)
    ctx = info["context"]
    rewards, probs, expected = [], [], []
    rng = np.random.default_rng(0)
    for _ in range(20):
        actions = rng.integers(0, game.n_actions, size=env.num_envs)
        _, reward, _, _, info = env.step(actions)
        np.testing.assert_array_equal(info["context"], ctx)
        rewards.append(reward)
        probs.append(info["win_prob"])
        expected.append(np.einsum("ny,ny->n", game.P[ctx, actions], game.ref[ctx]))
        ctx = info["next_context"]
    rewards, probs, expected = map(np.concatenate, (rewards, probs, expected))
    assert set(np.unique(rewards)) == {0.0, 1.0}
    n = rewards.size
    se = np.sqrt(np.mean(probs * (1 - probs)) / n)
    assert abs(rewards.mean() - probs.mean()) <= 4 * se
    se_total = np.sqrt(np.mean(expected) * (1 - np.mean(expected)) / n)
    assert abs(rewards.mean() - expected.mean()) <= 4 * se_total
    assert game.queries == n and game.exact_calls == 0


@pytest.mark.parametrize("mode", ["comparison", "win_prob", "log_win_rate"])
def test_single_and_vector_env_share_the_reward(mode):
    """Same game, same generator state: the single env and a 1-env vector env give the same
    opponent, win probability and reward (one ``play_duels`` function serves both)."""
    game = make_game("cyclic", seed=4)
    single = PrefBanditEnv(game=game, reward_mode=mode)
    batch = PrefBanditVectorEnv(num_envs=1, game=game, reward_mode=mode)
    _, info_s = single.reset(seed=9)
    _, info_v = batch.reset(seed=9)
    assert info_s["context"] == info_v["context"][0]
    _, r_s, _, _, step_s = single.step(2)
    _, r_v, _, _, step_v = batch.step(np.array([2]))
    assert r_s == r_v[0]
    assert step_s["opponent_action"] == step_v["opponent_action"][0]
    assert step_s["win_prob"] == step_v["win_prob"][0]


# ---------------------------------------------------------------- self-play opponent
def test_set_opponent_changes_the_opponent_distribution():
    env = vec(num_envs=4096)
    base = env.unwrapped
    game = base.game
    X, Y = game.n_contexts, game.n_actions
    policy = np.random.default_rng(5).dirichlet(np.full(Y, 0.5), size=X)
    base.set_opponent(policy)
    np.testing.assert_array_equal(base.opponent, policy)
    env.reset(seed=2)
    counts = np.zeros((X, Y))
    for _ in range(25):
        _, _, _, _, info = env.step(np.zeros(env.num_envs, dtype=np.int64))
        np.add.at(counts, (info["context"], info["opponent_action"]), 1)
    n = counts.sum(axis=1, keepdims=True)
    freq = counts / n
    se = np.sqrt(policy * (1 - policy) / n)
    assert np.all(np.abs(freq - policy) <= 4 * se + 1e-12)
    # and it is no longer π_ref (the check can fail)
    assert np.abs(freq - game.ref).max() > 0.1


def test_set_opponent_on_the_single_env_deterministic_policy():
    env = gym.make("prefzoo/PrefBandit-v0")
    game = env.unwrapped.game
    best = game.nash(0.0).argmax(axis=1)
    env.unwrapped.set_opponent(np.eye(game.n_actions)[best])
    env.reset(seed=0)
    for _ in range(30):
        _, info = env.reset()
        _, _, _, _, step = env.step(0)
        assert step["opponent_action"] == best[info["context"]]


@pytest.mark.parametrize("bad, match", [
    (np.full((8, 6), 1 / 5), "must sum to 1; row 0"),
    (np.full((8, 5), 1 / 5), r"opponent must be a policy of shape \[X, Y\] = \[8, 6\]"),
    (np.where(np.eye(8, 6) > 0, -0.5, 1.5 / 5), "opponent must be non-negative"),
    (np.full((8, 6), np.nan), "opponent must be finite"),
])
def test_set_opponent_rejects_non_distributions(bad, match):
    env = gym.make("prefzoo/PrefBandit-v0")
    with pytest.raises(ValueError, match=match):
        env.unwrapped.set_opponent(bad)
    venv = vec(num_envs=2, n_contexts=8, n_actions=6)
    with pytest.raises(ValueError, match=match):
        venv.unwrapped.set_opponent(bad)
    with pytest.raises(ValueError, match=match):
        gym.make("prefzoo/PrefBandit-v0", opponent=bad)


# ---------------------------------------------------------------- render, spaces
def test_ansi_render_returns_a_string():
    env = gym.make("prefzoo/PrefBandit-v0", render_mode="ansi")
    _, info = env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and f"context {info['context']}" in text
    env.step(1)
    text = env.render()
    assert isinstance(text, str) and "response 1 vs" in text
    venv = vec(num_envs=4, render_mode="ansi")
    venv.reset(seed=0)
    assert isinstance(venv.render(), str)
    # Gymnasium's convention (and SB3's make_vec_env asks for "rgb_array"): gym.make warns about
    # an unsupported render mode, and the env then renders nothing.
    with pytest.warns(UserWarning, match="not in the possible render_modes"):
        env = gym.make("prefzoo/PrefBandit-v0", render_mode="rgb_array")
    env.reset(seed=0)
    assert env.unwrapped.render() is None  # (the passive checker would reject the call itself)


def test_observations_are_the_context_features():
    env = gym.make("prefzoo/PrefBandit-v0")
    game = env.unwrapped.game
    for s in range(10):
        obs, info = env.reset(seed=s)
        assert obs.dtype == np.float32 and env.observation_space.contains(obs)
        np.testing.assert_array_equal(obs, game.features[info["context"]].astype(np.float32))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("action", [6, -1, 1.5, "0", np.array([1, 2])])
def test_single_env_rejects_actions_outside_the_space(action):
    env = gym.make("prefzoo/PrefBandit-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in Discrete\(6\), got"):
        env.step(action)
    assert env.game.queries == 0


def test_vector_step_returns_fresh_arrays():
    """Editing one step's outputs in place must not leak into the next step."""
    env = vec(num_envs=64)
    _, info0 = env.reset(seed=0)
    first = info0["context"].copy()
    info0["context"][:] = 7
    actions = np.zeros(64, dtype=np.int64)
    _, reward, terminated, truncated, info = env.step(actions)
    np.testing.assert_array_equal(info["context"], first)
    following = info["next_context"].copy()
    for arr in (reward, terminated, truncated, info["_final_obs"], info["next_context"]):
        arr[...] = 7 if arr.dtype != bool else ~arr
    _, _, terminated2, truncated2, info2 = env.step(actions)
    assert terminated2.all() and not truncated2.any() and info2["_final_obs"].all()
    np.testing.assert_array_equal(info2["context"], following)


def test_step_before_reset():
    with pytest.raises(RuntimeError, match="reset"):
        PrefBanditEnv().step(0)
    with pytest.raises(RuntimeError, match="reset"):
        PrefBanditVectorEnv(num_envs=2).step(np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("actions", [
    np.zeros(3, dtype=np.int64),           # wrong batch size
    np.zeros((4, 1), dtype=np.int64),      # wrong shape
    np.zeros(4, dtype=np.float32),         # wrong dtype
    np.array([0, 1, 2, 6]),                # out of range
    np.array([0, -1, 2, 3]),               # negative
])
def test_vector_env_rejects_malformed_action_batches(actions):
    env = vec(num_envs=4)
    env.reset(seed=0)
    expected = r"actions must be an integer array of shape \(4,\) with values in \[0, 6\)"
    with pytest.raises(ValueError, match=expected):
        env.step(actions)
    assert env.unwrapped.game.queries == 0


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        PrefBanditVectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="pass either game= or game arguments"):
        PrefBanditEnv(game=make_game("bt"), n_actions=4)
