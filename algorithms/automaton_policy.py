"""The sample-mode policy of a game exact at any size (:class:`~prefzoo.envs.answer_token.AnswerTokenGame`).

π_θ(y_t | x, t, s_t, c_t) = softmax(log q(·|s_t, x) + θ[x, t, s_t, c_t]): one free logit per
(prompt, position, state of π_ref's automaton, partial answer, token). It is the policy class of the
game's own equilibria (π*_β tilts π_ref by a function of the answer, and such tilts have this
form), π_θ = π_ref exactly at θ = 0, and :meth:`AutomatonPolicy.exact_policy` hands the current
policy to the game as a :class:`~prefzoo.envs.answer_token.FiniteStatePolicy`, so that its
exploitability and KL(π*_β ‖ π_θ) are exact over all V^L sequences. Responses are the game's
handles of token rows (``game.add_rows``); the losses call the bandit policies' methods.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prefzoo.envs.answer_token import AnswerTokenGame, FiniteStatePolicy
from prefzoo.envs.oracle import PreferenceOracle

from .lm_policy import Shared


class AutomatonPolicy(nn.Module):
    """Tabular logits over π_ref's automaton states (module docstring).

    Raises:
        ValueError: ``game`` is not an :class:`~prefzoo.envs.answer_token.AnswerTokenGame`.
    """

    def __init__(self, game: PreferenceOracle, device: torch.device):
        super().__init__()
        if not isinstance(game, AnswerTokenGame):
            raise ValueError(f"policy 'automaton' runs on π_ref's finite-state automaton (prefzoo/AnswerTokenGame-v0), "
                             f"got a {type(game).__name__}")
        self._game = Shared(game)  # a snapshot of the policy (deepcopy) plays the same game
        X, L, S, K, V = game.n_contexts, game.max_length, game.n_states, game.n_answers, game.vocab_size
        self.register_buffer("log_q", torch.as_tensor(game.log_q, dtype=torch.float64, device=device))
        self.logits = nn.Parameter(torch.zeros((X, L, S, K, V), dtype=torch.float64, device=device))
        self._walk_key, self._walked = None, None

    @property
    def game(self) -> AnswerTokenGame:
        return self._game.value

    def _table(self) -> torch.Tensor:
        """log π_θ(v | x, t, s, c), [X, L, S, K, V]."""
        return torch.log_softmax(self.log_q[:, None, :, None, :] + self.logits, dim=-1)

    def _walk(self, responses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(automaton states, partial answers, tokens) of handles [n] along their rows, [n, L] each
        (memoized for the last batch: the losses reuse one batch for every step)."""
        handles = responses.cpu().numpy()
        if handles.tobytes() != self._walk_key:
            tokens = self.game.rows(handles)
            states, partials, _ = self.game.walk(tokens)
            self._walk_key = handles.tobytes()
            self._walked = tuple(torch.as_tensor(a, device=self.logits.device) for a in (states, partials, tokens))
        return self._walked

    def log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_θ(y|x) of handles [n], [n] (float32, as the other policies')."""
        states, partials, tokens = self._walk(responses)
        x, t = contexts[:, None], torch.arange(tokens.shape[1], device=self.logits.device)
        logits = self.log_q[x, states] + self.logits[x, t, states, partials]  # [n, L, V]
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0].sum(1).float()

    def ref_log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_ref(y|x) of handles [n] (the game's exact reference)."""
        tokens = self.game.rows(responses.cpu().numpy())
        ref = self.game.reference.log_prob(contexts.cpu().numpy(), tokens)
        return torch.as_tensor(ref, dtype=torch.float32, device=self.logits.device)

    @torch.no_grad()
    def exact_policy(self) -> FiniteStatePolicy:
        """The current policy as the game's :class:`~prefzoo.envs.answer_token.FiniteStatePolicy`."""
        return FiniteStatePolicy(self.game, self._table().cpu().numpy())

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Handles of one exact sample per context, drawn with the caller's numpy generator."""
        return self.game.add_rows(self.exact_policy().sample(np.asarray(contexts), rng))

    def probs(self) -> np.ndarray:
        raise ValueError("this game's responses are not listed (V^L sequences per prompt), so a policy has no "
                         "table over them; exact_policy() is the policy the game's exact services take")

    def export(self, run_dir: str | os.PathLike) -> list[Path]:
        """``policy_log_probs.npy``: log π_θ(v | x, t, s, c), [X, L, S, K, V]. Returns the path."""
        path = Path(run_dir) / "policy_log_probs.npy"
        np.save(path, self.exact_policy().log_probs)
        return [path]
