"""π_ref of the token games: a small autoregressive GRU (:class:`TokenLM`) fitted in code, for a
fraction of a second, to a synthetic per-prompt Markov-chain language (never downloaded), and
the batched teacher-forcing and sampling helpers every sequence policy shares.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

from .sequences import EOS, decision_counts, enumerate_sequences


class TokenLM(nn.Module):
    """A small GRU language model over ``vocab_size`` tokens conditioned on prompt features.

    Input at step t: embed(previous token, BOS = ``vocab_size`` at t = 0) + W·φ(x); initial
    state tanh(U·φ(x)); next-token logits from a linear head. ``forward`` is teacher forcing
    over [n, T] inputs, ``step`` one incremental step (the sampling path).
    """

    def __init__(self, vocab_size: int, feature_dim: int, hidden: int = 64, embed: int = 32):
        super().__init__()
        self.vocab_size, self.bos = vocab_size, vocab_size
        self.embed = nn.Embedding(vocab_size + 1, embed)
        self.prompt_in = nn.Linear(feature_dim, embed)
        self.prompt_h0 = nn.Linear(feature_dim, hidden)
        self.rnn = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def initial_state(self, prompt: torch.Tensor):
        return torch.tanh(self.prompt_h0(prompt))[None].contiguous()

    def forward(self, prompt: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Next-token logits [n, T, V] for teacher-forced ``inputs`` [n, T] (ids ≤ V)."""
        self.rnn.flatten_parameters()  # no-op unless a deepcopy (a frozen snapshot) split the cuDNN weights
        x = self.embed(inputs) + self.prompt_in(prompt)[:, None]
        out, _ = self.rnn(x, self.initial_state(prompt))
        return self.head(out)

    def step(self, prompt: torch.Tensor, token: torch.Tensor, state):
        """Logits [n, V] after feeding ``token`` [n], and the new state."""
        self.rnn.flatten_parameters()
        x = self.embed(token[:, None]) + self.prompt_in(prompt)[:, None]
        out, state = self.rnn(x, state)
        return self.head(out[:, 0]), state


def teacher_inputs(tokens: torch.Tensor, bos: int) -> torch.Tensor:
    """[BOS, y_1, …, y_{L−1}]: the inputs that predict ``tokens`` [n, L] (pads are ids ≤ V)."""
    return torch.cat([torch.full_like(tokens[:, :1], bos), tokens[:, :-1]], dim=1)


def masked_sequence_log_prob(logits: torch.Tensor, tokens: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """log π(y|x) = Σ_{t < steps} log softmax(logits_t)[y_t] for ``logits`` [n, L, V]; the padding
    after EOS is masked (its ids may be out of range, they are clamped before the gather)."""
    log_p = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
    picked = log_p.gather(-1, tokens.clamp(max=logits.shape[-1] - 1)[..., None])[..., 0]
    mask = torch.arange(tokens.shape[1], device=tokens.device)[None] < steps[:, None]
    return (picked * mask).sum(1)


@torch.no_grad()
def sample_tokens(step_fn, state, n: int, max_length: int, vocab_size: int, uniforms: torch.Tensor,
                  bos: int) -> torch.Tensor:
    """Autoregressive inverse-CDF sampling, batched, on the uniforms' device: ``step_fn(token,
    state) -> (logits [n, V], state)``; ``uniforms`` [n, L] (drawn by the caller's numpy
    generator, so the draw is reproducible on any device). Returns tokens [n, L] padded with
    ``vocab_size`` after EOS."""
    device = uniforms.device
    tokens = torch.full((n, max_length), vocab_size, dtype=torch.long, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    token = torch.full((n,), bos, dtype=torch.long, device=device)
    for t in range(max_length):
        logits, state = step_fn(token, state)
        cdf = torch.softmax(logits.float(), dim=-1).cumsum(-1)
        drawn = (uniforms[:, t:t + 1] * cdf[:, -1:] > cdf).sum(-1).clamp(max=vocab_size - 1)
        token = torch.where(alive, drawn, torch.full_like(drawn, vocab_size))
        tokens[:, t] = token
        alive = alive & (drawn != EOS)
    return tokens


class ReferenceLM:
    """π_ref's model of a token game as data: :class:`TokenLM` keyword arguments and weights;
    :meth:`build` makes a fresh copy (its enumerated distribution is the game's ``ref``)."""

    def __init__(self, kwargs: dict[str, Any], state: dict[str, torch.Tensor]):
        self.kwargs, self.state = kwargs, state

    def build(self, device: torch.device | str = "cpu") -> TokenLM:
        model = TokenLM(**self.kwargs)
        model.load_state_dict(self.state)
        return model.to(device)


def synthetic_language(rng, features, V, L):
    """Target of π_ref's fit: a per-prompt first-order Markov chain with an EOS hazard. Returns
    the maximal content prefixes [M, L−1] (M = (V−1)^{L−1}, every shorter prefix is a prefix of
    one of them), and for prompt x, prefix row m and position t the target next-token law
    q [X, M, L, V] after (c_1..c_t) and that prefix's probability times 1/multiplicity
    w [X, M, L], so that Σ w·CE(q, π_θ) is the exact sequence-level cross-entropy."""
    d = features.shape[1]
    trans = rng.normal(size=(V + 1, V)) * 1.5  # row V: the BOS row
    trans[:, EOS] -= 1.0  # keep some mass on long sequences
    trans[V, EOS] -= 2.0
    prompt_w = rng.normal(size=(d, V)) / np.sqrt(d)
    prefixes = np.array(list(itertools.product(range(1, V), repeat=L - 1)), dtype=np.int64).reshape(-1, L - 1)
    inputs = np.concatenate([np.full((len(prefixes), 1), V), prefixes], axis=1)  # [M, L]
    logits = trans[inputs][None] + (features @ prompt_w)[:, None, None]  # [X, M, L, V]
    q = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    reach = np.ones(q.shape[:3])  # P(prefix c_1..c_t) under the chain
    for t in range(1, L):
        reach[:, :, t] = reach[:, :, t - 1] * np.take_along_axis(q[:, :, t - 1], prefixes[None, :, t - 1:t], -1)[..., 0]
    multiplicity = (V - 1.0) ** (L - 1 - np.arange(L))
    return prefixes, q, reach / multiplicity


def fit_reference(features, V, L, rng, seed, hidden, fit_steps) -> tuple[np.ndarray, ReferenceLM]:
    """Fit a :class:`TokenLM` to the synthetic language by exact cross-entropy (over prefixes:
    one teacher-forced pass over the maximal prefixes covers every conditional), then enumerate
    its sequence distribution in float64. Returns π_ref [X, S] and its :class:`ReferenceLM`."""
    prefixes, q, w = synthetic_language(rng, features, V, L)
    X, M = q.shape[:2]
    kwargs = {"vocab_size": V, "feature_dim": features.shape[1], "hidden": hidden, "embed": hidden}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TokenLM(**kwargs)
    inputs = teacher_inputs(torch.as_tensor(np.tile(np.pad(prefixes, ((0, 0), (0, 1))), (X, 1))), V)
    prompt = torch.as_tensor(np.repeat(features, M, axis=0), dtype=torch.float32)
    target = torch.as_tensor((q * w[..., None]).reshape(X * M, L, V) / X, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(fit_steps):
        optimizer.zero_grad()
        loss = -(target * torch.log_softmax(model(prompt, inputs), dim=-1)).sum()
        loss.backward()
        optimizer.step()
    tokens, lengths = enumerate_sequences(V, L)
    S = len(tokens)
    tok = torch.as_tensor(np.tile(tokens, (X, 1)))
    with torch.no_grad():
        model64 = TokenLM(**kwargs).double()
        model64.load_state_dict(model.state_dict())
        logits = model64(torch.as_tensor(np.repeat(features, S, axis=0)), teacher_inputs(tok, V))
        log_ref = masked_sequence_log_prob(logits, tok, torch.as_tensor(np.tile(decision_counts(lengths, L), X)))
    ref = log_ref.exp().reshape(X, S).numpy()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return ref / ref.sum(axis=1, keepdims=True), ReferenceLM(kwargs, state)
