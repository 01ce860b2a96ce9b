"""The Gymnasium front-end of :class:`~prefzoo.envs.lm.game.LMGame`."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from ..checks import check_choice
from ..game import env_game
from ..token_episode import Ending, TokenEpisode, TokenEpisodeEnv
from .game import LMGame

REWARD_MODES = ("comparison", "win_prob")


def prompt_episode(game: LMGame) -> TokenEpisode:
    """The episode over the game's tokenizer: V = its vocabulary, L = ``max_new_tokens``, its EOS,
    each prompt observed as its token ids left-padded with V (``MultiDiscrete([V+1]*P)``, P the
    longest prompt), and the prompts' texts in ``info`` and ``render``."""
    V = len(game.tokenizer)
    width = max(len(ids) for ids in game.prompt_ids)
    prompts = np.full((len(game.prompt_ids), width), V, dtype=np.int64)
    for i, ids in enumerate(game.prompt_ids):
        prompts[i, width - len(ids):] = ids
    return TokenEpisode(V, game.max_new_tokens, game.tokenizer.eos_token_id, prompts,
                        spaces.MultiDiscrete(np.full(width, V + 1), dtype=np.int64), game.prompts)


class LMGameEnv(TokenEpisodeEnv):
    """A real (Hugging Face) language model alignment game: write a response token by token, then
    duel π_ref's response to the same prompt under a text oracle.

    ## Description
    A training prompt x ~ ρ (uniform) is drawn; the agent emits token ids of the game's tokenizer
    until EOS or ``max_new_tokens`` tokens; the decoded response then duels a response y' ~ π_ref
    (the model as loaded) under the oracle's P(y ≻ y' | x) (default: VADER sentiment,
    Bradley–Terry on compound scores). No exact services: ``env.unwrapped.game`` is an
    :class:`LMGame` (a counted oracle with estimated metrics). The episode itself is
    :class:`~prefzoo.envs.token_episode.TokenEpisodeEnv`'s.

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
    :class:`LMGame` keyword (``prompts``, ``eval_prompts``, ``model``, ``oracle``, ``oracle_kwargs``,
    ``reward_funcs``, ``reward_weights``, ``max_new_tokens``, ``temperature``, ``top_p``,
    ``eval_fraction``, ``eval_samples``, ``lora_rank``, ``seed``, ``device``, ``max_queries``).

    ## info
    ``context`` and ``prompt`` always; at the last step ``response`` (its handle), ``text``,
    ``opponent_action`` (π_ref's handle), ``opponent_text`` and ``win_prob``; before it
    ``response``, ``opponent_action`` and ``win_prob`` are −1, −1 and −1.0 (``UNDECIDED``, not
    NaN: see :mod:`prefzoo.envs.token_episode`) and the texts are absent.

    ## Vectorized
    No vector entry point: the zoo's algorithms sample whole responses in batches from the policy
    (``prefzoo.algorithms.lm_policy``) and query the same game.

    ## Version History
    * v0: initial version.
    """

    outcome_info = {"response": int, "opponent_action": int, "win_prob": float}

    def __init__(self, game: LMGame | None = None, reward_mode: str = "comparison", render_mode: str | None = None,
                 **game_kwargs: Any):
        check_choice("reward_mode", reward_mode, REWARD_MODES)
        game = env_game(LMGame, game, **game_kwargs)
        super().__init__(game, prompt_episode(game), render_mode)
        self.reward_mode = reward_mode

    def finish(self, context: int, tokens: np.ndarray, length: int) -> Ending:
        """Duel the decoded response against one of π_ref's under the game's text oracle."""
        game, x = self.game, np.array([context])
        response = game.store.add([tokens[:length]])
        opponent = game.sample_ref(x, self.np_random)
        win_prob = float(game.prob(x, response, opponent)[0])
        reward = (float(game.compare(x, response, opponent, self.np_random)[0])
                  if self.reward_mode == "comparison" else win_prob)
        text, opponent_text = game.store.text(response)[0], game.store.text(opponent)[0]
        return Ending(reward, {"response": int(response[0]), "text": text, "opponent_action": int(opponent[0]),
                               "opponent_text": opponent_text, "win_prob": win_prob},
                      f"{text!r} vs {opponent_text!r}, P(win)={win_prob:.3f}")
