"""The Gymnasium front-end of :class:`~prefzoo.envs.lm.game.LMGame`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..game import check_choice
from .game import LMGame

REWARD_MODES = ("comparison", "win_prob")
_UNDECIDED = -1.0  # info["win_prob"] before the episode ends (not NaN: check_env compares infos with ==)


class LMGameEnv(gym.Env):
    """A real (Hugging Face) language model alignment game: write a response token by token, then
    duel π_ref's response to the same prompt under a text oracle.

    ## Description
    A training prompt x ~ ρ (uniform) is drawn; the agent emits token ids of the game's tokenizer
    until EOS or ``max_new_tokens`` tokens; the decoded response then duels a response y' ~ π_ref
    (the model as loaded) under the oracle's P(y ≻ y' | x) (default: VADER sentiment,
    Bradley–Terry on compound scores). No exact services: ``env.unwrapped.game`` is an
    :class:`LMGame` (a counted oracle with estimated metrics).

    ## Action Space
    ``Discrete(V)``: the next token id (V = the tokenizer's vocabulary size).

    ## Observation Space
    ``Dict``:
    | key | space | meaning |
    |---|---|---|
    | ``prompt`` | ``MultiDiscrete([V+1]*P)`` | the prompt's token ids, left-padded with V |
    | ``tokens`` | ``MultiDiscrete([V+1]*L)`` | response tokens so far, padded with V |
    | ``length`` | ``Discrete(L+1)`` | number of response tokens so far |

    ## Rewards (``reward_mode``, at the last step; 0 before)
    | mode | reward |
    |---|---|
    | ``comparison`` (default) | Bernoulli(P(y ≻ y' \\| x)), one counted oracle query |
    | ``win_prob`` | the oracle's P(y ≻ y' \\| x) |

    ## Starting State
    x ~ ρ from ``self.np_random``; no tokens.

    ## Episode End
    ``terminated=True`` at EOS or the L-th token (L = ``max_new_tokens``); ``truncated`` is False.

    ## Arguments
    ``reward_mode``, ``render_mode``, ``game`` (a prebuilt :class:`LMGame`), and every
    :class:`LMGame` keyword (``prompts``, ``model``, ``oracle``, ``oracle_kwargs``,
    ``max_new_tokens``, ``temperature``, ``top_p``, ``eval_fraction``, ``eval_samples``,
    ``lora_rank``, ``seed``, ``device``).

    ## info
    ``context`` and ``prompt`` always; at the last step ``response`` (its handle), ``text``,
    ``opponent_action`` (π_ref's handle), ``opponent_text`` and ``win_prob`` (before it,
    ``response``, ``opponent_action`` and ``win_prob`` are −1).

    ## Vectorized
    None: the zoo's algorithms sample whole responses in batches from the policy
    (``prefzoo.algorithms.lm_policy``) and query the same game.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, game: LMGame | None = None, reward_mode: str = "comparison", render_mode: str | None = None,
                 **game_kwargs: Any):
        check_choice("reward_mode", reward_mode, REWARD_MODES)
        if game is not None and game_kwargs:
            raise ValueError(f"pass either game= or LMGame keywords, not both (got {sorted(game_kwargs)})")
        self.game = game if game is not None else LMGame(**game_kwargs)
        self.reward_mode, self.render_mode = reward_mode, render_mode
        self.vocab_size = len(self.game.tokenizer)
        self.max_length = self.game.max_new_tokens
        width = max(len(p) for p in self.game.prompt_ids)
        self._prompts = np.full((len(self.game.prompt_ids), width), self.vocab_size, dtype=np.int64)
        for i, ids in enumerate(self.game.prompt_ids):
            self._prompts[i, width - len(ids):] = ids
        self.observation_space = spaces.Dict({
            "prompt": spaces.MultiDiscrete(np.full(width, self.vocab_size + 1), dtype=np.int64),
            "tokens": spaces.MultiDiscrete(np.full(self.max_length, self.vocab_size + 1), dtype=np.int64),
            "length": spaces.Discrete(self.max_length + 1)})
        self.action_space = spaces.Discrete(self.vocab_size)
        self._context: int | None = None
        self._tokens = np.full(self.max_length, self.vocab_size, dtype=np.int64)
        self._length = 0
        self._last = "not reset yet"

    def _obs(self):
        return {"prompt": self._prompts[self._context].copy(), "tokens": self._tokens.copy(),
                "length": np.int64(self._length)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._context = int(self.game.sample_contexts(1, self.np_random)[0])
        self._tokens[:] = self.vocab_size
        self._length = 0
        prompt = self.game.prompts[self._context]
        self._last = f"{prompt!r}: <start>"
        return self._obs(), {"context": self._context, "prompt": prompt}

    def step(self, action):
        if self._context is None:
            raise RuntimeError("call reset() before step() (the episode has ended or never started)")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a token id in {self.action_space}, got {action!r}")
        self._tokens[self._length] = int(action)
        self._length += 1
        x = self._context
        info = {"context": x, "prompt": self.game.prompts[x], "response": -1, "opponent_action": -1,
                "win_prob": _UNDECIDED}
        if int(action) != self.game.tokenizer.eos_token_id and self._length < self.max_length:
            self._last = f"{self.game.prompts[x]!r}: {self._tokens[:self._length].tolist()}"
            return self._obs(), 0.0, False, False, info
        response = self.game.store.add([self._tokens[:self._length]])
        opponent = self.game.sample_ref(np.array([x]), self.np_random)
        win_prob = float(self.game.prob(np.array([x]), response, opponent)[0])
        reward = (float(self.game.compare(np.array([x]), response, opponent, self.np_random)[0])
                  if self.reward_mode == "comparison" else win_prob)
        text, opponent_text = self.game.store.text(response)[0], self.game.store.text(opponent)[0]
        info.update(response=int(response[0]), text=text, opponent_action=int(opponent[0]),
                    opponent_text=opponent_text, win_prob=win_prob)
        self._last = (f"{self.game.prompts[x]!r}: {text!r} vs {opponent_text!r}, P(win)={win_prob:.3f}, "
                      f"reward={reward:.3f}")
        obs = self._obs()
        self._context = None
        return obs, reward, True, False, info

    def render(self):
        if self.render_mode == "ansi":
            return self._last + "\n"
        return None
