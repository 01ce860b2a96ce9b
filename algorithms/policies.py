"""Torch policies for sample mode: tabular logits or an MLP over context features.

Every policy starts exactly at π_ref (logits = log π_ref + f_θ with f_θ = 0 at init) and exposes
the same calls that the losses use, so one loss serves all policies:
``log_probs(contexts) -> [n, Y]``, ``log_prob(contexts, responses) -> [n]``,
``ref_log_prob(contexts, responses) -> [n]`` (log π_ref) and ``probs() -> [X, Y]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prefzoo.envs.checks import check_choice
from prefzoo.envs.oracle import PreferenceOracle, sample_table_rows

from .automaton_policy import AutomatonPolicy, ResidualGRUPolicy
from .sequence_policy import SEQUENCE_POLICIES


class BanditPolicy(nn.Module):
    """π_θ(y|x) = softmax(log π_ref(·|x) + f_θ(x)) over a finite response set."""

    def __init__(self, game: PreferenceOracle, device: torch.device):
        super().__init__()
        if game.ref is None:
            raise ValueError(f"policy {type(self).__name__} is a table over listed responses; {type(game).__name__}'s "
                             "are not listed (on prefzoo/AnswerTokenGame-v0 use policy='automaton' or 'gru')")
        self.register_buffer("log_ref", torch.as_tensor(np.log(game.ref), dtype=torch.float32, device=device))
        self.register_buffer("features", torch.as_tensor(game.features, dtype=torch.float32, device=device))

    def delta(self, contexts: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        """log π_θ(·|x) for a batch of context indices, [n, Y]."""
        return torch.log_softmax(self.log_ref[contexts] + self.delta(contexts), dim=-1)

    def log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_θ(y|x) for paired batches, [n]: the rows of the batch's distinct contexts are
        normalized once and looked up, O(distinct·Y + n) instead of O(n·Y) (the same values)."""
        distinct, row = torch.unique(contexts, return_inverse=True)
        return self.log_probs(distinct)[row, responses]

    def ref_log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_ref(y|x) for paired batches, [n] (a lookup in the ``log_ref`` table)."""
        return self.log_ref[contexts, responses]

    @torch.no_grad()
    def probs(self) -> np.ndarray:
        """The whole policy [X, Y] as float64 numpy (rows renormalized in float64: a float32 softmax
        over many responses can miss 1 by more than a policy check allows)."""
        contexts = torch.arange(self.log_ref.shape[0], device=self.log_ref.device)
        p = self.log_probs(contexts).double().exp().cpu().numpy()
        return p / p.sum(axis=1, keepdims=True)

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One response per context, drawn with the caller's numpy generator
        (:func:`~prefzoo.envs.oracle.sample_table_rows` on ``probs()``)."""
        return sample_table_rows(self.probs(), contexts, rng)


class TabularPolicy(BanditPolicy):
    """One free logit per (context, response)."""

    def __init__(self, game: PreferenceOracle, device: torch.device):
        super().__init__(game, device)
        self.logits = nn.Parameter(torch.zeros_like(self.log_ref))

    def delta(self, contexts):
        return self.logits[contexts]


class MLPPolicy(BanditPolicy):
    """f_θ(x) = MLP(features(x)); the last layer starts at zero so π_θ = π_ref at init."""

    def __init__(self, game: PreferenceOracle, device: torch.device, hidden: int = 64):
        super().__init__(game, device)
        self.net = nn.Sequential(nn.Linear(self.features.shape[1], hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, game.n_actions)).to(device)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def delta(self, contexts):
        return self.net(self.features[contexts])


# + token-game policies, and the automaton policy of the games exact at any size
POLICIES = {"tabular": TabularPolicy, "mlp": MLPPolicy, **SEQUENCE_POLICIES, "automaton": AutomatonPolicy}


def make_policy(kind: str, game: PreferenceOracle, device: torch.device) -> BanditPolicy:
    if game.responses == "text":  # a real language model: only its own Hugging Face policy
        if kind != "hf":
            raise ValueError(f"on an LM game (prefzoo/LMGame-v0) the policy is the game's Hugging Face model: use "
                             f"policy='hf', got {kind!r}")
        from .lm_policy import LMPolicy

        return LMPolicy(game, device)
    check_choice("policy", kind, POLICIES)
    if kind == "gru" and game.responses == "tokens" and not game.listed:  # a game exact at any size
        return ResidualGRUPolicy(game, device)
    return POLICIES[kind](game, device)
