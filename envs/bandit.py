"""Contextual dueling bandit environments over any game of indexed, listed responses (a
:class:`~prefzoo.envs.game.PreferenceGame` for the registered ``PrefBandit`` ids).

The single env and the batched vector env hold the same game and call the same
:func:`play_duels` function, so the reward is defined once.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .checks import check_choice, check_int, check_step
from .game import env_game, make_game
from .oracle import PreferenceOracle

REWARD_MODES = ("comparison", "win_prob", "log_win_rate")


def play_duels(game: PreferenceOracle, contexts: np.ndarray, actions: np.ndarray, opponent: np.ndarray,
               reward_mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play ``actions`` against responses drawn from ``opponent`` [X, Y]; batched.

    Returns ``(reward, opponent_action, win_prob)`` where ``win_prob = P(a ≻ a' | x)`` is the
    exact probability of the drawn duel (ground truth for ``info``, not an oracle call).
    Rewards: ``comparison`` one counted Bernoulli query; ``win_prob`` the exact P(a ≻ a' | x)
    (one exact call); ``log_win_rate`` log P(a ≻ opponent | x) (Y exact calls).
    """
    opp = game.sample_responses(opponent, contexts, rng)
    win_prob = game.preference(contexts, actions, opp)
    if reward_mode == "comparison":
        reward = game.compare(contexts, actions, opp, rng).astype(np.float64)
    elif reward_mode == "win_prob":
        reward = game.prob(contexts, actions, opp)
    else:
        probs = game.prob(contexts[:, None], actions[:, None], np.arange(game.n_actions)[None])
        reward = np.log(np.einsum("ny,ny->n", probs, opponent[contexts]))
    return reward, opp, win_prob


class _BanditBase:
    """Construction shared by the single and the vector env."""

    def _setup(self, family, game, reward_mode, opponent, game_kwargs):
        check_choice("reward_mode", reward_mode, REWARD_MODES)
        self.game = env_game(make_game, game, family, **game_kwargs)
        self.reward_mode = reward_mode
        self.set_opponent(self.game.ref if opponent is None else opponent)
        self._obs_table = self.game.features.astype(np.float32)
        dim = self._obs_table.shape[1]
        bound = float(np.ceil(np.abs(self._obs_table).max()))
        self._single_obs_space = spaces.Box(-bound, bound, shape=(dim,), dtype=np.float32)
        self._single_action_space = spaces.Discrete(self.game.n_actions)

    def set_opponent(self, policy: np.ndarray) -> None:
        """Set the opponent policy [X, Y] (π_ref by default; the learner's own for self-play)."""
        self.opponent = self.game.check_policy(policy, "opponent")


class PrefBanditEnv(_BanditBase, gym.Env):
    """Contextual dueling bandit: answer a prompt, then duel a response of the opponent.

    ## Description
    Each episode is one step. A context x ~ ρ is drawn; the agent picks a response a; an
    opponent response a' ~ opponent(·|x) (π_ref by default) is drawn and the preference oracle
    P(a ≻ a' | x) of the game decides the reward. Families: ``bt`` (transitive),
    ``cyclic`` (rock-paper-scissors skew), ``mixed`` (annotator mixture), ``reward_order``
    (reward ranking with ties). These games are exact: ``env.unwrapped.game`` has P, π_ref, ρ,
    ``nash(beta)`` and ``exploitability(pi, beta)``. Any other game whose responses are indexed
    and listed (a :class:`~prefzoo.envs.oracle.PreferenceOracle` with a ``ref`` table) is played the
    same way: pass it as ``game``, or register its class (:func:`~prefzoo.envs.register_game`).

    ## Action Space
    ``Discrete(n_actions)``: the response index.

    ## Observation Space
    ``Box(-B, B, (feature_dim,), float32)``: the context's fixed feature vector (B bounds the
    game's features).

    ## Rewards (``reward_mode``)
    | mode | reward |
    |---|---|
    | ``comparison`` (default) | Bernoulli(P(a ≻ a' \\| x)), one counted oracle query |
    | ``win_prob`` | exact P(a ≻ a' \\| x) |
    | ``log_win_rate`` | log P(a ≻ opponent \\| x), the log-win-rate game's payoff |

    ## Starting State
    x ~ ρ from ``self.np_random``.

    ## Episode End
    ``terminated=True`` after the single step; ``truncated`` is always False.

    ## Arguments
    | kwarg | default | meaning |
    |---|---|---|
    | ``family`` | ``"bt"`` | preference family (fixed by the registered id) |
    | ``n_contexts``, ``n_actions``, ``feature_dim`` | 8, 6, 4 | game size |
    | ``seed`` | 0 | seed of the game itself (``reset(seed=…)`` seeds the episodes) |
    | other :func:`~prefzoo.envs.game.make_game` kwargs | | ``reward_scale``, ``cyclic_strength``, … |
    | ``game`` | None | a prebuilt game of indexed, listed responses instead of the kwargs above, or a |
    | | | ``"module:Class"`` built as ``Class(**kwargs)`` (a registered game class) |
    | ``reward_mode`` | ``"comparison"`` | see Rewards |
    | ``opponent`` | π_ref | opponent policy [X, Y]; change later with ``set_opponent`` |
    | ``render_mode`` | None | ``"ansi"`` renders text; other modes render nothing (gym.make warns) |

    ## info
    ``context`` (index), ``opponent_action`` and ``win_prob`` (exact P(a ≻ a' | x)) after
    ``step``; ``context`` after ``reset``.

    ## Vectorized
    ``gym.make_vec(id, num_envs, vectorization_mode="vector_entry_point")`` gives
    :class:`PrefBanditVectorEnv`, which steps the whole batch in numpy with ``SAME_STEP``
    autoreset: every ``step`` is a scored duel and returns fresh contexts (~300× the
    comparisons/s of ``SyncVectorEnv`` at 1,024 envs, ``benchmarks/env_throughput.py``).
    ``vectorization_mode="sync"`` wraps this single env in Gymnasium's ``SyncVectorEnv``, whose
    default ``NEXT_STEP`` autoreset wastes every other step: after the terminal step, the next
    ``step`` ignores its actions and only resets (reward 0, ``terminated=False``, no query).
    Pass ``vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}`` to avoid that.

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, prefzoo
    >>> env = gym.make("prefzoo/PrefBandit-Cyclic-v0", n_contexts=4, n_actions=3)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["context"] in range(4)
    ((4,), True)
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, family: str = "bt", game: PreferenceOracle | str | None = None,
                 reward_mode: str = "comparison", opponent: np.ndarray | None = None,
                 render_mode: str | None = None, **game_kwargs: Any):
        self._setup(family, game, reward_mode, opponent, game_kwargs)
        self.observation_space = self._single_obs_space
        self.action_space = self._single_action_space
        self.render_mode = render_mode
        self._context: int | None = None
        self._last: str = "not reset yet"

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._context = int(self.game.sample_contexts(1, self.np_random)[0])
        self._last = f"context {self._context}"
        return self._obs_table[self._context].copy(), {"context": self._context}

    def step(self, action):
        check_step(self._context is not None, self.action_space, action, "an integer",
                   "each episode is a single step")
        x = np.array([self._context])
        reward, opp, win_prob = play_duels(self.game, x, np.array([int(action)]), self.opponent,
                                           self.reward_mode, self.np_random)
        info = {"context": self._context, "opponent_action": int(opp[0]), "win_prob": float(win_prob[0])}
        self._last = (f"context {self._context}: response {int(action)} vs {int(opp[0])}, "
                      f"P(win)={win_prob[0]:.3f}, reward={reward[0]:.3f}")
        obs = self._obs_table[self._context].copy()
        self._context = None
        return obs, float(reward[0]), True, False, info

    def render(self):
        if self.render_mode == "ansi":
            return self._last + "\n"
        return None


class PrefBanditVectorEnv(_BanditBase, VectorEnv):
    """``num_envs`` dueling bandits stepped as one numpy batch (see :class:`PrefBanditEnv`).

    Every episode is one step, so this env uses Gymnasium's ``SAME_STEP`` autoreset: ``step``
    scores the actions for the current contexts and returns the observations of freshly drawn
    contexts; ``info["final_obs"]`` holds the observations that were acted on and
    ``info["context"]`` their context indices (``info["next_context"]`` the new ones).
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, family: str = "bt", game: PreferenceOracle | str | None = None,
                 reward_mode: str = "comparison", opponent: np.ndarray | None = None,
                 render_mode: str | None = None, **game_kwargs: Any):
        num_envs = check_int("num_envs", num_envs, low=1)
        self._setup(family, game, reward_mode, opponent, game_kwargs)
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.single_observation_space = self._single_obs_space
        self.single_action_space = self._single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._contexts: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._contexts = self.game.sample_contexts(self.num_envs, self.np_random)
        return self._obs_table[self._contexts], {"context": self._contexts.copy()}

    def step(self, actions):
        if self._contexts is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if (actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer)
                or actions.min() < 0 or actions.max() >= self.game.n_actions):
            raise ValueError(f"actions must be an integer array of shape ({self.num_envs},) with values in "
                             f"[0, {self.game.n_actions}), got shape {actions.shape} dtype {actions.dtype}")
        acted = self._contexts
        reward, opp, win_prob = play_duels(self.game, acted, actions, self.opponent, self.reward_mode,
                                           self.np_random)
        self._contexts = self.game.sample_contexts(self.num_envs, self.np_random)
        info = {"context": acted, "opponent_action": opp, "win_prob": win_prob,
                "next_context": self._contexts.copy(), "final_obs": self._obs_table[acted],
                "_final_obs": np.ones(self.num_envs, dtype=bool)}
        # fresh arrays every step: a caller that edits one in place must not change the next step
        terminated, truncated = np.ones(self.num_envs, dtype=bool), np.zeros(self.num_envs, dtype=bool)
        return self._obs_table[self._contexts], reward, terminated, truncated, info

    def render(self):
        if self.render_mode == "ansi" and self._contexts is not None:
            return f"{self.num_envs} bandits, contexts {self._contexts[:8].tolist()}...\n"
        return None
