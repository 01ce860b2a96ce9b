"""The Gymnasium env of the token games (:mod:`prefzoo.envs.token`): write a sequence token by
token, then duel an opponent's."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .bandit import REWARD_MODES, duel
from .game import check_choice, env_game
from .sequences import EOS
from .token import TokenGame, TokenOracle, make_token_game

_UNDECIDED = float("nan")  # info["win_prob"] before the episode ends (one object: equal to itself)


class TokenGameEnv(gym.Env):
    """Token-level LM alignment game: write a sequence token by token, then duel an opponent's.

    ## Description
    A prompt x ~ ρ is drawn; the agent emits tokens from a vocabulary of V ids (id 0 = EOS,
    1..V−1 content) until EOS or L tokens; the finished sequence y then duels a sequence
    y' ~ opponent(·|x) (π_ref by default) under the sequence-level preference P(y ≻ y'|x) =
    σ(r(x,y) − r(x,y') + c·sin(θ(x,y) − θ(x,y'))) built from unigram/bigram counts and length
    (``TokenGame-v0``: Bradley–Terry, c = 0; ``TokenGame-Cyclic-v0``: c = 3, intransitive). The
    S = Σ_k (V−1)^k sequences per prompt (781 for V = 6, L = 4) are enumerated, so
    ``env.unwrapped.game`` is an exact :class:`TokenGame` (a :class:`PreferenceGame` whose
    responses are sequence indices) with ``nash(beta)``, ``exploitability``, ``kl``; π_ref
    (``game.ref``) is the enumerated distribution of a small GRU fitted in code
    (``game.ref_lm.build()``). Above 8,192 sequences, or with a ``preference`` callable, the game
    is a :class:`TokenOracle` (counted oracle, no exact services).

    ## Action Space
    ``Discrete(V)``: the next token (0 = EOS).

    ## Observation Space
    ``Dict``:
    | key | space | meaning |
    |---|---|---|
    | ``prompt`` | ``Box(-B, B, (feature_dim,), float32)`` | the prompt's features |
    | ``tokens`` | ``MultiDiscrete([V+1]*L)`` | tokens so far, padded with V |
    | ``length`` | ``Discrete(L+1)`` | number of tokens so far |

    ## Rewards (``reward_mode``, at the last step; 0 before)
    | mode | reward |
    |---|---|
    | ``comparison`` (default) | Bernoulli(P(y ≻ y' \\| x)), one counted oracle query |
    | ``win_prob`` | exact P(y ≻ y' \\| x) |
    | ``log_win_rate`` | log P(y ≻ opponent \\| x) (enumerable games only) |

    ## Starting State
    x ~ ρ from ``self.np_random``; no tokens.

    ## Episode End
    ``terminated=True`` when the agent emits EOS or the L-th token; ``truncated`` is always False.

    ## Arguments
    | kwarg | default | meaning |
    |---|---|---|
    | ``family`` | ``"bt"`` | ``"bt"`` or ``"cyclic"`` (fixed by the registered id) |
    | ``n_contexts``, ``vocab_size``, ``max_length``, ``feature_dim`` | 8, 6, 4, 4 | game size (S ≤ 8,192: exact; ≤ 2^18: :class:`TokenOracle`) |
    | ``seed`` | 0 | seed of the game and of π_ref's fit (``reset(seed=…)`` seeds episodes) |
    | other :func:`make_token_game` kwargs | | ``reward_scale``, ``cyclic_strength``, ``hidden``, … |
    | ``preference`` | None | a callable ``(x, tokens, tokens2) -> P`` instead of the built-in preference |
    | ``game`` | None | a prebuilt :class:`TokenGame` / :class:`TokenOracle` instead of the kwargs above |
    | ``reward_mode`` | ``"comparison"`` | see Rewards |
    | ``opponent`` | π_ref | opponent's sequence distribution [X, S]; ``set_opponent`` for self-play |
    | ``render_mode`` | None | ``"ansi"`` renders text |

    ## info
    ``context`` always; ``sequence`` (index of the finished sequence), ``opponent_action``
    (index of the opponent's) and ``win_prob`` (exact P(y ≻ y'|x)) at the last step; before it,
    ``sequence`` and ``opponent_action`` are −1 and ``win_prob`` is NaN.

    ## Vectorized
    None yet: use ``gym.make_vec(..., vectorization_mode="sync")`` (or SB3's ``DummyVecEnv``).
    Algorithms of the zoo do not step the env: they sample whole sequences from a batched
    policy and query the same game (``prefzoo.algorithms.sequence_policy``).

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, prefzoo
    >>> env = gym.make("prefzoo/TokenGame-Cyclic-v0")
    >>> obs, info = env.reset(seed=0)
    >>> env.unwrapped.game.P.shape, obs["tokens"].tolist(), int(obs["length"])
    ((8, 781, 781), [6, 6, 6, 6], 0)
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    reward_modes: ClassVar[tuple[str, ...]] = REWARD_MODES  # what :meth:`_score` implements

    def __init__(self, family: str = "bt", game: TokenGame | TokenOracle | None = None,
                 reward_mode: str = "comparison", opponent: np.ndarray | None = None,
                 render_mode: str | None = None, **game_kwargs: Any):
        check_choice("reward_mode", reward_mode, self.reward_modes)
        self.game = env_game(make_token_game, game, family, **game_kwargs)
        if reward_mode == "log_win_rate" and not self.game.enumerable:
            raise ValueError("reward_mode='log_win_rate' sums P over every sequence, but this game's "
                             f"{self.game.n_actions:,} sequences are not enumerable; use 'comparison' or 'win_prob'")
        self.reward_mode, self.render_mode = reward_mode, render_mode
        self.set_opponent(self.game.ref if opponent is None else opponent)
        V, L = self.game.sequences.vocab_size, self.game.sequences.max_length
        self._prompts = self.game.features.astype(np.float32)
        bound = float(np.ceil(np.abs(self._prompts).max()))
        self.observation_space = spaces.Dict({
            "prompt": spaces.Box(-bound, bound, shape=self._prompts.shape[1:], dtype=np.float32),
            "tokens": spaces.MultiDiscrete(np.full(L, V + 1), dtype=np.int64),
            "length": spaces.Discrete(L + 1)})
        self.action_space = spaces.Discrete(V)
        self._context: int | None = None
        self._tokens = np.full(L, V, dtype=np.int64)
        self._length = 0
        self._last = "not reset yet"

    def set_opponent(self, policy: np.ndarray) -> None:
        """Set the opponent's sequence distribution [X, S] (π_ref by default; e.g. a policy's
        ``probs()`` for self-play)."""
        self.opponent = self.game.check_policy(policy, "opponent")

    def _obs(self):
        return {"prompt": self._prompts[self._context].copy(), "tokens": self._tokens.copy(),
                "length": np.int64(self._length)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._context = int(self.game.sample_contexts(1, self.np_random)[0])
        self._tokens[:] = self.game.sequences.vocab_size
        self._length = 0
        self._last = f"prompt {self._context}: <start>"
        return self._obs(), {"context": self._context}

    # info keys before the episode's last step (NaN is one object, so equal to itself)
    _pending_info = {"sequence": -1, "opponent_action": -1, "win_prob": _UNDECIDED}

    def step(self, action):
        if self._context is None:
            raise RuntimeError("call reset() before step() (the episode has ended or never started)")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a token id in {self.action_space} (0 = EOS, 1..{self.game.sequences.vocab_size - 1}), "
                             f"got {action!r}")
        self._tokens[self._length] = int(action)
        self._length += 1
        info = {"context": self._context, **self._pending_info}
        if int(action) != EOS and self._length < self.game.sequences.max_length:
            self._last = f"prompt {self._context}: {self._tokens[:self._length].tolist()}"
            return self._obs(), 0.0, False, False, info
        seq = int(self.game.sequences.index(self._tokens[None])[0])
        reward, outcome, text = self._score(self._context, seq)
        info.update(sequence=seq, **outcome)
        self._last = f"prompt {self._context}: '{self.game.sequences.decode(seq)}' {text}, reward={reward:.3f}"
        obs = self._obs()
        self._context = None
        return obs, reward, True, False, info

    def _score(self, x: int, seq: int) -> tuple[float, dict, str]:
        """Reward of the finished sequence, its ``info`` entries and a render fragment."""
        reward, opp, win_prob = duel(self.game, np.array([x]), np.array([seq]), self.opponent, self.reward_mode,
                                     self.np_random)
        text = f"vs '{self.game.sequences.decode(int(opp[0]))}', P(win)={win_prob[0]:.3f}"
        return float(reward[0]), {"opponent_action": int(opp[0]), "win_prob": float(win_prob[0])}, text

    def render(self):
        if self.render_mode == "ansi":
            return self._last + "\n"
        return None
