"""Real RL on the env: stable-baselines3 PPO (MlpPolicy) learns to beat π_ref from Bernoulli
comparisons alone; the win rate is then measured exactly from the game's P."""

from __future__ import annotations

import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

import prefzoo  # noqa: F401  (registers the ids)


def exact_win_rate_vs_ref(model: PPO, game) -> float:
    """ρ-weighted P(π_θ ≻ π_ref), π_θ read from the policy on every context's features."""
    obs = torch.as_tensor(game.features, dtype=torch.float32)
    with torch.no_grad():
        probs = model.policy.get_distribution(obs).distribution.probs.double().numpy()
    probs /= probs.sum(axis=1, keepdims=True)  # float32 rows, renormalized in float64
    return game.expectation(game.win_rate(probs, game.ref))


@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_beats_the_reference_policy(seed):
    torch.set_num_threads(1)
    venv = make_vec_env("prefzoo/PrefBandit-v0", n_envs=8, seed=seed, vec_env_cls=DummyVecEnv,
                        env_kwargs={"reward_mode": "comparison", "seed": 0})
    game = venv.envs[0].unwrapped.game
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=128, n_epochs=4, learning_rate=3e-3,
                gamma=0.0, gae_lambda=1.0, seed=seed, device="cpu", verbose=0)
    before = exact_win_rate_vs_ref(model, game)
    model.learn(total_timesteps=4096)
    after = exact_win_rate_vs_ref(model, game)
    best = game.expectation(game.win_rates(game.ref).max(axis=1))  # best response to π_ref
    queries = sum(env.unwrapped.game.queries for env in venv.envs)
    assert queries >= 4096  # it learned from counted Bernoulli comparisons
    assert abs(before - 0.5) < 0.05  # a near-uniform start is about even with π_ref
    assert after > 0.65 and after > before + 0.15
    assert after <= best + 1e-12  # nothing beats the best response
