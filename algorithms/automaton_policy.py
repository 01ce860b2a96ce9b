"""The sample-mode policies of a game exact at any size (:class:`~prefzoo.envs.answer_token.AnswerTokenGame`).

``automaton``: π_θ(y_t | x, t, s_t, c_t) = softmax(log q(·|s_t, x) + θ[x, t, s_t, c_t]), one free
logit per (prompt, position, state of π_ref's automaton, partial answer, token). It is the policy
class of the game's own equilibria (π*_β tilts π_ref by a function of the answer, and such tilts
have this form), and :meth:`AutomatonPolicy.game_view` hands the current policy to the game as a
:class:`~prefzoo.envs.answer_token.FiniteStatePolicy`, so that its exploitability and
KL(π*_β ‖ π_θ) are exact over all V^L sequences.

``gru`` (:class:`ResidualGRUPolicy`): a neural sequence policy, π_θ(y_t | x, y_<t) =
softmax(log q(·|s_t, x) + W·h_t) with h_t a GRU over the prompt, the tokens so far and the partial
answer c_t (a function of those tokens that it reads as an input, as a language model reads its
own text, instead of learning the mod-K counter from a comparison signal: without it, WIND did not
lower KL(π*_β ‖ π) within 20–30k comparisons in the two settings tried; with it, learning still
slows as V and L grow: 0.78 → 0.67 in 41k comparisons at V = 4, L = 20, no progress in 80k at
V = 10, L = 12 with lr ≤ 0.003); one network shared across prompts, positions and states, no table.
Its metrics are Monte Carlo estimates (:class:`~prefzoo.envs.answer_token.SampledPolicy`: ``est/``
keys with standard errors).

Both start at π_ref exactly (θ = 0, W = 0). Responses are the game's handles of token rows
(``game.add_rows``); the losses call the bandit policies' methods.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prefzoo.envs.answer_token import AnswerTokenGame, FiniteStatePolicy, SampledPolicy
from prefzoo.envs.oracle import PreferenceOracle

from .lm_policy import Shared


class AnswerTokenPolicy(nn.Module):
    """What the policies of an :class:`~prefzoo.envs.answer_token.AnswerTokenGame` share: the game,
    the walk of a batch of handles through π_ref's automaton, and log π_ref.

    Raises:
        ValueError: ``game`` is not an :class:`~prefzoo.envs.answer_token.AnswerTokenGame`.
    """

    def __init__(self, game: PreferenceOracle, device: torch.device):
        super().__init__()
        if not isinstance(game, AnswerTokenGame):
            raise ValueError(f"policy {type(self).__name__} runs on π_ref's finite-state automaton "
                             f"(prefzoo/AnswerTokenGame-v0), got a {type(game).__name__}")
        self._game = Shared(game)  # a snapshot of the policy (deepcopy) plays the same game
        self.register_buffer("log_q", torch.as_tensor(game.log_q, dtype=torch.float64, device=device))
        self._walk_key, self._walked = None, None

    @property
    def game(self) -> AnswerTokenGame:
        return self._game.value

    @property
    def device(self) -> torch.device:
        return self.log_q.device

    def _walk(self, responses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(automaton states, partial answers, tokens) of handles [n] along their rows, [n, L] each
        (memoized for the last batch: the losses reuse one batch for every step)."""
        handles = responses.cpu().numpy()
        if handles.tobytes() != self._walk_key:
            tokens = self.game.rows(handles)
            states, partials, _ = self.game.walk(tokens)
            self._walk_key = handles.tobytes()
            self._walked = tuple(torch.as_tensor(a, device=self.device) for a in (states, partials, tokens))
        return self._walked

    def ref_log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_ref(y|x) of handles [n] (the game's exact reference)."""
        tokens = self.game.rows(responses.cpu().numpy())
        ref = self.game.reference.log_prob(contexts.cpu().numpy(), tokens)
        return torch.as_tensor(ref, dtype=torch.float32, device=self.device)

    def probs(self) -> np.ndarray:
        raise ValueError("this game's responses are not listed (V^L sequences per prompt), so a policy has no "
                         "table over them; game_view() is the policy the game's services take")


class AutomatonPolicy(AnswerTokenPolicy):
    """Tabular logits over π_ref's automaton states (module docstring)."""

    def __init__(self, game: PreferenceOracle, device: torch.device):
        super().__init__(game, device)
        X, L, S, K, V = game.n_contexts, game.max_length, game.n_states, game.n_answers, game.vocab_size
        self.logits = nn.Parameter(torch.zeros((X, L, S, K, V), dtype=torch.float64, device=device))

    def _table(self) -> torch.Tensor:
        """log π_θ(v | x, t, s, c), [X, L, S, K, V]."""
        return torch.log_softmax(self.log_q[:, None, :, None, :] + self.logits, dim=-1)

    def log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_θ(y|x) of handles [n], [n] (float32, as the other policies')."""
        states, partials, tokens = self._walk(responses)
        x, t = contexts[:, None], torch.arange(tokens.shape[1], device=self.logits.device)
        logits = self.log_q[x, states] + self.logits[x, t, states, partials]  # [n, L, V]
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0].sum(1).float()

    @torch.no_grad()
    def game_view(self) -> FiniteStatePolicy:
        """The current policy as the game's :class:`~prefzoo.envs.answer_token.FiniteStatePolicy`."""
        return FiniteStatePolicy(self.game, self._table().cpu().numpy())

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Handles of one exact sample per context, drawn with the caller's numpy generator."""
        return self.game.add_rows(self.game_view().sample(np.asarray(contexts), rng))

    def export(self, run_dir: str | os.PathLike) -> list[Path]:
        """``policy_log_probs.npy``: log π_θ(v | x, t, s, c), [X, L, S, K, V]. Returns the path."""
        path = Path(run_dir) / "policy_log_probs.npy"
        np.save(path, self.game_view().log_probs)
        return [path]


class ResidualGRUPolicy(AnswerTokenPolicy):
    """A GRU over the prompt, the tokens so far and the partial answer, whose output is added to
    π_ref's next-token logits (module docstring); ``hidden`` units, the output layer zero at init
    (π_θ = π_ref)."""

    def __init__(self, game: PreferenceOracle, device: torch.device, hidden: int = 64):
        super().__init__(game, device)
        V = game.vocab_size
        self.register_buffer("delta", torch.as_tensor(game.delta, device=device))
        self.register_buffer("weights", torch.as_tensor(game.weights, device=device))
        self.register_buffer("features", torch.as_tensor(game.features, dtype=torch.float32, device=device))
        self.embed = nn.Embedding(V + 1, hidden, device=device)  # id V: the start of the response
        self.embed_answer = nn.Embedding(game.n_answers, hidden, device=device)  # the partial answer c_t
        self.prompt = nn.Linear(game.features.shape[1], hidden, device=device)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, device=device)
        self.head = nn.Linear(hidden, V, device=device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _h0(self, contexts: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.prompt(self.features[contexts]))[None]

    def _log_prob_tokens(self, contexts, states, partials, tokens, ref_weight: float = 0.0) -> torch.Tensor:
        """Σ_t log π(y_t | x, y_<t) of token rows [n, L] with π_ref's states and the partial answers
        before each token, [n]; π = π_θ, or with ``ref_weight`` w > 0 the token-level geometric
        mixture softmax((1−w)·log π_θ + w·log π_ref) = softmax(log q + (1−w)·W·h_t) (Nash-MD's)."""
        inputs = torch.cat([torch.full_like(tokens[:, :1], self.game.vocab_size), tokens[:, :-1]], dim=1)
        out, _ = self.gru(self.embed(inputs) + self.embed_answer(partials), self._h0(contexts))
        logits = self.log_q[contexts[:, None], states].float() + (1 - ref_weight) * self.head(out)  # [n, L, V]
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0].sum(1)

    def log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_θ(y|x) of handles [n], [n] (teacher forcing)."""
        return self._log_prob_tokens(contexts, *self._walk(responses))

    @torch.no_grad()
    def sample_rows(self, contexts: np.ndarray, rng: np.random.Generator, ref_weight: float = 0.0) -> np.ndarray:
        """Token rows [n, L], one per context, by inverse-CDF sampling with uniforms from ``rng``
        (``ref_weight``: from the token-level mixture, :meth:`_log_prob_tokens`)."""
        x = torch.as_tensor(np.asarray(contexts), device=self.device)
        n, L = len(x), self.game.max_length
        uniforms = torch.as_tensor(rng.random((n, L)), device=self.device)
        token = torch.full((n,), self.game.vocab_size, device=self.device)
        state, partial = torch.zeros((2, n), dtype=torch.long, device=self.device)
        hidden, tokens = self._h0(x), torch.empty((n, L), dtype=torch.long, device=self.device)
        for t in range(L):
            out, hidden = self.gru((self.embed(token) + self.embed_answer(partial))[:, None], hidden)
            cdf = torch.softmax(self.log_q[x, state] + (1 - ref_weight) * self.head(out[:, 0]).double(), -1).cumsum(-1)
            token = (uniforms[:, t:t + 1] * cdf[:, -1:] > cdf).sum(-1).clamp(max=self.game.vocab_size - 1)
            tokens[:, t], state = token, self.delta[state, token]
            partial = (partial + self.weights[token]) % self.game.n_answers
        return tokens.cpu().numpy()

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Handles of one sample per context, drawn with the caller's numpy generator."""
        return self.sample_mixture(contexts, rng, 0.0)

    @torch.no_grad()
    def score_rows(self, contexts: np.ndarray, tokens: np.ndarray, ref_weight: float = 0.0) -> np.ndarray:
        """log π(y|x) of token rows [n, L], [n] float64 (π_θ, or the mixture of ``ref_weight``)."""
        states, partials, _ = self.game.walk(self.game.check_tokens(tokens))
        walked = (torch.as_tensor(a, device=self.device) for a in (np.asarray(contexts), states, partials, tokens))
        return self._log_prob_tokens(*walked, ref_weight).double().cpu().numpy()

    def export(self, run_dir: str | os.PathLike) -> list[Path]:
        """``gru_policy.pt``: the network's state dict (load into a ResidualGRUPolicy of the same game)."""
        path = Path(run_dir) / "gru_policy.pt"
        torch.save(self.state_dict(), path)
        return [path]

    def sample_mixture(self, contexts: np.ndarray, rng: np.random.Generator, ref_weight: float) -> np.ndarray:
        """Handles of one sample per context from the token-level mixture of ``ref_weight`` (Nash-MD's
        opponent; 0: the policy itself)."""
        return self.game.add_rows(self.sample_rows(contexts, rng, ref_weight))

    def game_view(self, ref_weight: float = 0.0) -> SampledPolicy:
        """The policy (or the token-level mixture of ``ref_weight``) as the game's
        :class:`~prefzoo.envs.answer_token.SampledPolicy`: samples and log-probabilities of token
        rows, so estimated metrics."""
        return SampledPolicy(self.game, functools.partial(self.sample_rows, ref_weight=ref_weight),
                             functools.partial(self.score_rows, ref_weight=ref_weight))
