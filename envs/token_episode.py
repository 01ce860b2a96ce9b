"""The token-by-token episode of the token-level envs: from a prompt, write a response one token
at a time until EOS or L tokens, then score it once.

:class:`TokenEpisodeEnv` owns the episode — the observation, ``reset``, appending a token, the
stop at EOS or at the length limit, ``render`` — and leaves its subclasses one hook,
:meth:`TokenEpisodeEnv.finish`: the reward of the finished response, its ``info`` entries and a
render fragment. :class:`~prefzoo.envs.token_env.TokenGameEnv` (a duel against an opponent's
sequence), :class:`~prefzoo.envs.answer.AnswerGameEnv` (the answer-level reward of a trace) and
:class:`~prefzoo.envs.lm.env.LMGameEnv` (a duel of decoded texts under a text oracle) supply it;
a :class:`TokenEpisode` says what their episodes look like.

**Undecided info values.** Every key a subclass lists in ``outcome_info`` is in ``info`` at every
step; before the last step it holds :data:`UNDECIDED` = −1, as the key's declared type (−1 for an
index or a count, −1.0 for a probability or a reward). Why −1 and not NaN:

- Gymnasium's ``check_env`` (``check_step_determinism``) steps twice from one seed and compares
  the two infos value by value with ``==``; NaN ≠ NaN, so a NaN in the info of a step that does
  not end the episode fails the checker. (The passive checker that ``gym.make`` wraps around an
  env reads no info value, so it is indifferent.)
- A vector env stacks each info key into an array typed by the first sub-env's value
  (``VectorEnv._add_info``); the sentinel has the type of the final value, so an int −1 never
  truncates a float win probability stacked after it.
- −1 lies outside every index, count and probability. For a real-valued outcome (the answer
  game's ``exact_reward``) −1 is also a legal value: read ``terminated``, not the value, to know
  whether the episode has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .checks import check_step
from .sequences import EOS

UNDECIDED = -1  # every outcome_info value before the last step, as the key's type (module docstring)


@dataclass(frozen=True)
class TokenEpisode:
    """What a token episode looks like.

    Attributes:
        vocab_size: V; the actions are the token ids 0..V−1, and V pads ``obs["tokens"]``.
        max_length: L, the most tokens a response has.
        eos: the id that ends the response (``None``: a response always has L tokens).
        prompts: each prompt as observed, [X, ...] (``obs["prompt"]`` is ``prompts[x]``).
        prompt_space: the space of one row of ``prompts``.
        prompt_texts: the prompts as text, [X], or ``None``: when given, ``info["prompt"]`` carries
            the prompt's text and ``render`` shows it; otherwise ``render`` names its index.
    """

    vocab_size: int
    max_length: int
    eos: int | None
    prompts: np.ndarray
    prompt_space: spaces.Space
    prompt_texts: Sequence[str] | None = None


def sequence_episode(game: Any) -> TokenEpisode:
    """The episode over a game's enumerated ``sequences`` (token and answer games): EOS = 0, each
    prompt observed as its feature vector, ``Box(-B, B, (d,), float32)`` with B bounding the
    game's ``features``."""
    prompts = game.features.astype(np.float32)
    bound = float(np.ceil(np.abs(prompts).max()))
    return TokenEpisode(game.sequences.vocab_size, game.sequences.max_length, EOS, prompts,
                        spaces.Box(-bound, bound, shape=prompts.shape[1:], dtype=np.float32))


class Ending(NamedTuple):
    """What :meth:`TokenEpisodeEnv.finish` returns."""

    reward: float
    info: dict[str, Any]  # every ``outcome_info`` key, decided (and any key known only at the end)
    text: str  # the render line after the prompt, without the reward


class TokenEpisodeEnv(gym.Env):
    """A token-by-token episode over ``game``; subclasses implement :meth:`finish`.

    Observation ``Dict(prompt = episode.prompt_space, tokens = MultiDiscrete([V+1]*L) padded with
    V, length = Discrete(L+1))``; action ``Discrete(V)``; ``reset`` draws x ~ ρ from
    ``self.np_random``; ``step`` appends the token and ends the episode (``terminated=True``,
    ``truncated`` always False) at EOS or at the L-th token, where it calls :meth:`finish` once.
    The reward is 0 before the last step. ``info`` holds ``context`` (and ``prompt`` when the
    episode has ``prompt_texts``) always, and every ``outcome_info`` key: :data:`UNDECIDED`
    before the last step, :meth:`finish`'s values at it.

    Args:
        game: the game the episode is played on (``self.game``); its ``sample_contexts`` draws x.
        episode: the :class:`TokenEpisode`, kept as ``self.episode`` (``self.spec`` is
            Gymnasium's ``EnvSpec``).
        render_mode: ``"ansi"`` renders text; None renders nothing.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    outcome_info: ClassVar[dict[str, type]]  # the info keys decided at the last step, and their types

    def __init__(self, game: Any, episode: TokenEpisode, render_mode: str | None = None):
        self.game, self.episode, self.render_mode = game, episode, render_mode
        V, L = episode.vocab_size, episode.max_length
        self.observation_space = spaces.Dict({
            "prompt": episode.prompt_space,
            "tokens": spaces.MultiDiscrete(np.full(L, V + 1), dtype=np.int64),
            "length": spaces.Discrete(L + 1)})
        self.action_space = spaces.Discrete(V)
        self._pending = {key: kind(UNDECIDED) for key, kind in self.outcome_info.items()}
        self._context: int | None = None
        self._tokens = np.full(L, V, dtype=np.int64)
        self._length = 0
        self._last = "not reset yet"

    # ------------------------------------------------------------------ the hook
    def finish(self, context: int, tokens: np.ndarray, length: int) -> Ending:
        """Score the finished response ``tokens[:length]`` to prompt ``context``: the reward, the
        ``info`` entries (every ``outcome_info`` key) and the render text. ``tokens`` [L] is the
        row as observed (padded with V); draw only from ``self.np_random``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the episode
    def _obs(self) -> dict[str, np.ndarray]:
        return {"prompt": self.episode.prompts[self._context].copy(), "tokens": self._tokens.copy(),
                "length": np.int64(self._length)}

    def _context_info(self, x: int) -> dict[str, Any]:
        texts = self.episode.prompt_texts
        return {"context": x} if texts is None else {"context": x, "prompt": texts[x]}

    def _label(self, x: int) -> str:
        texts = self.episode.prompt_texts
        return f"prompt {x}" if texts is None else repr(texts[x])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._context = x = int(self.game.sample_contexts(1, self.np_random)[0])
        self._tokens[:] = self.episode.vocab_size
        self._length = 0
        self._last = f"{self._label(x)}: <start>"
        return self._obs(), self._context_info(x)

    def step(self, action):
        check_step(self._context is not None, self.action_space, action, f"a token id (EOS = {self.episode.eos})",
                   "the episode has ended or never started")
        x = self._context
        self._tokens[self._length] = int(action)
        self._length += 1
        info = {**self._context_info(x), **self._pending}
        if int(action) != self.episode.eos and self._length < self.episode.max_length:
            self._last = f"{self._label(x)}: {self._tokens[:self._length].tolist()}"
            return self._obs(), 0.0, False, False, info
        ending = self.finish(x, self._tokens.copy(), self._length)
        info.update(ending.info)
        self._last = f"{self._label(x)}: {ending.text}, reward={ending.reward:.3f}"
        obs = self._obs()
        self._context = None
        return obs, float(ending.reward), True, False, info

    def render(self):
        if self.render_mode == "ansi":
            return self._last + "\n"
        return None
