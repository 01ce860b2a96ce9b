"""The Gymnasium env of the token games (:mod:`prefzoo.envs.token`): write a sequence token by
token, then duel an opponent's."""

from __future__ import annotations

from typing import Any

import numpy as np

from .bandit import REWARD_MODES, play_duels
from .checks import check_choice
from .game import env_game
from .token import TokenGame, TokenOracle, make_token_game
from .token_episode import Ending, TokenEpisodeEnv, sequence_episode


class TokenGameEnv(TokenEpisodeEnv):
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
    is a :class:`TokenOracle` (counted oracle, no exact services). The episode itself is
    :class:`~prefzoo.envs.token_episode.TokenEpisodeEnv`'s.

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
    | ``log_win_rate`` | log P(y ≻ opponent \\| x) (games whose sequences are listed only) |

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
    (index of the opponent's) and ``win_prob`` (exact P(y ≻ y'|x)) at the last step; before it
    they are −1, −1 and −1.0 (``UNDECIDED``, not NaN: see :mod:`prefzoo.envs.token_episode`).

    ## Vectorized
    No vector entry point: use ``gym.make_vec(..., vectorization_mode="sync")`` (or SB3's
    ``DummyVecEnv``). Algorithms of the zoo do not step the env: they sample whole sequences from
    a batched policy and query the same game (``prefzoo.algorithms.sequence_policy``).

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, prefzoo
    >>> env = gym.make("prefzoo/TokenGame-Cyclic-v0")
    >>> obs, info = env.reset(seed=0)
    >>> env.unwrapped.game.P.shape, obs["tokens"].tolist(), int(obs["length"])
    ((8, 781, 781), [6, 6, 6, 6], 0)
    """

    outcome_info = {"sequence": int, "opponent_action": int, "win_prob": float}

    def __init__(self, family: str = "bt", game: TokenGame | TokenOracle | None = None,
                 reward_mode: str = "comparison", opponent: np.ndarray | None = None,
                 render_mode: str | None = None, **game_kwargs: Any):
        check_choice("reward_mode", reward_mode, REWARD_MODES)
        game = env_game(make_token_game, game, family, **game_kwargs)
        if reward_mode == "log_win_rate" and not game.listed:
            raise ValueError("reward_mode='log_win_rate' sums P over every sequence, but this game's "
                             f"{game.n_actions:,} sequences are not listed; use 'comparison' or 'win_prob'")
        super().__init__(game, sequence_episode(game), render_mode)
        self.reward_mode = reward_mode
        self.set_opponent(game.ref if opponent is None else opponent)

    def set_opponent(self, policy: np.ndarray) -> None:
        """Set the opponent's sequence distribution [X, S] (π_ref by default; e.g. a policy's
        ``probs()`` for self-play)."""
        self.opponent = self.game.check_policy(policy, "opponent")

    def finish(self, context: int, tokens: np.ndarray, length: int) -> Ending:
        """Duel the finished sequence against one drawn from the opponent (:func:`play_duels`)."""
        sequences = self.game.sequences
        seq = int(sequences.index(tokens[None])[0])
        reward, opp, win_prob = play_duels(self.game, np.array([context]), np.array([seq]), self.opponent,
                                           self.reward_mode, self.np_random)
        opp, win_prob = int(opp[0]), float(win_prob[0])
        return Ending(float(reward[0]), {"sequence": seq, "opponent_action": opp, "win_prob": win_prob},
                      f"'{sequences.decode(seq)}' vs '{sequences.decode(opp)}', P(win)={win_prob:.3f}")
