"""PPO from stable-baselines3 on the dueling-bandit env itself: the plain-RL baseline.

The env's reward is one comparison against its opponent (π_ref by default); a Gymnasium wrapper
adds β·log π_ref(a|x) and SB3's entropy bonus is β·H(π(·|x)), so the per-episode objective is
E[P(a ≻ opponent)] − β·KL(π‖π_ref). Its exact optimum against the fixed opponent is
π ∝ π_ref·exp(P(y ≻ opponent)/β), a KL-regularized best response, not an equilibrium. SB3 draws
from the global numpy and torch generators; this module gives each algorithm its own copies of
those states and swaps them in around every SB3 call, so runs are seeded, isolated from other
code, and resumable bit for bit.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy.special import softmax
from stable_baselines3 import PPO as SB3PPO

from prefzoo.envs.checks import check_int, check_probability, check_real

from .base import Algorithm


class RefLogProbReward(gym.Wrapper):
    """Adds β·log π_ref(a | x) to the reward, with x = ``info["context"]``."""

    def __init__(self, env: gym.Env, beta: float):
        super().__init__(env)
        self.beta, self.log_ref = beta, np.log(env.unwrapped.game.ref)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward + self.beta * self.log_ref[info["context"], int(action)], terminated, truncated, info


def kl_best_response(win: np.ndarray, ref: np.ndarray, beta: float) -> np.ndarray:
    """argmax_π E_π[win] − β KL(π‖π_ref) = π_ref·exp(win/β)/Z, per row."""
    return softmax(np.log(ref) + win / beta, axis=-1)


@contextlib.contextmanager
def global_rng(states: dict[str, Any]):
    """Run SB3 on this algorithm's own global numpy/torch generator states, then restore the
    caller's; ``states`` is updated in place with the advanced states."""
    outer_np, outer_torch = np.random.get_state(), torch.get_rng_state()  # noqa: NPY002 (SB3 uses the global RNGs)
    if states:
        np.random.set_state(states["numpy"])  # noqa: NPY002
        torch.set_rng_state(states["torch"])
    try:
        yield
    finally:
        states.update(numpy=np.random.get_state(), torch=torch.get_rng_state())  # noqa: NPY002
        np.random.set_state(outer_np)  # noqa: NPY002
        torch.set_rng_state(outer_torch)


class PPO(Algorithm):
    """Stable-baselines3 PPO on the PrefBandit env with a KL-to-π_ref shaped reward.

    Paper: Schulman, Wolski, Dhariwal, Radford, Klimov (2017), "Proximal Policy Optimization
    Algorithms", arXiv:1707.06347 (implementation: Raffin et al., stable-baselines3, JMLR 2021).

    Sample mode only. Reward r = 1{a ≻ a'} + β log π_ref(a|x) with a' ~ opponent (the env's
    ``comparison`` mode; one counted query per env step), ``ent_coef = β``, so PPO ascends
    E_x E_{a~π}[P(a ≻ opponent|x)] − β KL(π(·|x)‖π_ref(·|x)). Episodes are one step (γ and GAE
    are moot) and advantages are **not** normalized (normalizing would rescale the win term
    against the entropy bonus and move the optimum).
    Target: π ∝ π_ref·exp(P(y ≻ opponent)/β) (:func:`kl_best_response`), exact for this
    objective; against the default opponent π_ref it is not an equilibrium, so exploitability
    stays well above that of Nash-seeking algorithms.
    One ``step()`` = ``model.learn(n_steps_per_iteration)``: one rollout and ``n_epochs`` passes
    of minibatch updates. ``policy_probs()`` reads SB3's action distribution on each context's
    features. Each ``step`` restarts the rollout from a fresh ``reset`` (one-step episodes make
    this equivalent) so a checkpoint holds no half-finished episode.

    Args:
        beta: KL strength β > 0 (reward shaping and ``ent_coef``).
        n_steps_per_iteration: env steps (= oracle queries) per iteration, ≥ ``batch_size``.
        n_epochs: SB3 passes over each rollout.
        clip: SB3 ``clip_range`` ε ∈ (0, 1).
        lr: Adam learning rate of SB3's policy and value networks.
        batch_size: SB3 minibatch size; ``n_steps_per_iteration`` should be a multiple of it.
        hidden: width of SB3's two-layer MLP (policy and value).
        (others): ``seed`` seeds SB3 (``PPO(seed=…)``) and the env; device as in the base.
    """

    supported_modes = ("sample",)
    supported_responses = ("indexed",)  # SB3 PPO acts on the bandit env itself

    def __init__(self, env, seed: int = 0, mode: str = "sample", beta: float = 0.1,
                 n_steps_per_iteration: int = 256, n_epochs: int = 10, clip: float = 0.2, lr: float = 3e-3,
                 batch_size: int = 64, hidden: int = 64, device: str = "cpu"):
        beta = check_real("beta", beta, 0, low_open=True)  # the KL strength and ent_coef
        batch_size = check_int("batch_size", batch_size, low=1)
        n_steps_per_iteration = check_int("n_steps_per_iteration", n_steps_per_iteration, low=batch_size)
        n_epochs, hidden = check_int("n_epochs", n_epochs, low=1), check_int("hidden", hidden, low=1)
        clip = check_probability("clip", clip, low_open=True, high_open=True)
        super().__init__(env, seed, mode, "tabular", lr, batch_size, n_epochs, device)
        self.policy = self.optimizer = None  # the policy is SB3's
        if getattr(self.env.unwrapped, "reward_mode", None) not in ("comparison", "win_prob"):
            raise ValueError("PPO needs a PrefBandit env with reward_mode 'comparison' or 'win_prob' "
                             "(its reward must average to P(a ≻ opponent))")
        self.beta, self.n_steps_per_iteration = beta, int(n_steps_per_iteration)
        self._rng_states: dict[str, Any] = {}
        with global_rng(self._rng_states):
            self.model = SB3PPO("MlpPolicy", RefLogProbReward(self.env, beta), learning_rate=lr,
                                n_steps=self.n_steps_per_iteration, batch_size=batch_size, n_epochs=n_epochs,
                                gamma=1.0, gae_lambda=1.0, clip_range=clip, normalize_advantage=False,
                                ent_coef=beta, policy_kwargs={"net_arch": [hidden, hidden]},
                                seed=seed, device=self.device, verbose=0)
            self.model.env.reset()  # consumes SB3's pending env seed now, so checkpoints hold none
        self._obs = torch.as_tensor(self.game.features, dtype=torch.float32, device=self.model.device)

    def target_policy(self):
        opponent = self.env.unwrapped.opponent
        return kl_best_response(self.game.win_rates(opponent), self.game.ref, self.beta)

    def policy_probs(self):
        with torch.no_grad():
            probs = self.model.policy.get_distribution(self._obs).distribution.probs
        return probs.double().cpu().numpy()

    def step(self):
        before = self.game.queries
        with global_rng(self._rng_states):
            self.model._last_obs = None  # fresh reset: no episode straddles two iterations
            self.model.learn(self.n_steps_per_iteration, reset_num_timesteps=False)
        self.queries += self.game.queries - before
        self.samples += self.n_steps_per_iteration
        logged = self.model.logger.name_to_value
        return {f"train/{k}": float(logged[f"train/{k}"]) for k in ("loss", "entropy_loss", "approx_kl")
                if f"train/{k}" in logged}

    def state_dict(self):
        # SB3's parameters (policy and optimizer state dicts), not its pickled zip: data only
        return {**super().state_dict(), "sb3": self.model.get_parameters(), "num_timesteps": self.model.num_timesteps,
                "rng_states": self._rng_states, "env_rng": self.env.unwrapped.np_random.bit_generator.state}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.model.set_parameters(state["sb3"], exact_match=True, device=self.model.device)
        self.model.num_timesteps = state["num_timesteps"]
        self._rng_states = state["rng_states"]
        self.env.unwrapped.np_random.bit_generator.state = state["env_rng"]
