"""Token sequences of the token games: enumeration, indexing and features.

A *sequence* is a run of 0..L content tokens (ids 1..V−1) closed by EOS (id 0) when it is
shorter than L; the S = Σ_{k=0..L} (V−1)^k sequences of a prompt are enumerated in short-lex
order (all of length 0, then 1, …; lexicographic within a length), and a sequence's index is a
closed-form function of its tokens (:func:`sequence_index`, inverse :func:`sequence_tokens`), so
"response y" of a token game is a sequence index. :class:`SequenceSet` holds the enumeration of
one (V, L).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

EOS = 0


def count_sequences(vocab_size: int, max_length: int) -> int:
    """S = Σ_{k=0..L} (V−1)^k: content lengths 0..L (EOS-terminated below L), in closed form."""
    base = vocab_size - 1
    return max_length + 1 if base == 1 else (base ** (max_length + 1) - 1) // (base - 1)


def enumerate_sequences(vocab_size: int, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """All sequences in short-lex order: tokens [S, L] (EOS after the content, then the pad id
    ``vocab_size``) and content lengths [S]."""
    V, L = vocab_size, max_length
    tokens = np.full((count_sequences(V, L), L), V, dtype=np.int64)
    lengths = np.zeros(len(tokens), dtype=np.int64)
    row = 0
    for k in range(L + 1):
        block = np.array(list(itertools.product(range(1, V), repeat=k)), dtype=np.int64).reshape((V - 1) ** k, k)
        tokens[row:row + len(block), :k] = block
        if k < L:
            tokens[row:row + len(block), k] = EOS
        lengths[row:row + len(block)] = k
        row += len(block)
    return tokens, lengths


def sequence_index(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Short-lex index of each sequence in ``tokens`` [n, L] (content ids 1..V−1, then EOS or
    anything: the content ends at the first non-content id), on the tensor's device."""
    base = vocab_size - 1
    content = (tokens >= 1) & (tokens < vocab_size)
    alive = torch.cumprod(content.long(), dim=1).bool()
    value = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
    for t in range(tokens.shape[1]):
        value = torch.where(alive[:, t], value * base + (tokens[:, t] - 1), value)
    offsets = torch.tensor([count_sequences(vocab_size, k - 1) if k else 0 for k in range(tokens.shape[1] + 1)],
                           device=tokens.device)
    return offsets[alive.sum(1)] + value


def sequence_tokens(index, vocab_size: int, max_length: int) -> np.ndarray:
    """Token rows [n, L] of short-lex indices [n] (EOS after the content, then the pad id V): the
    closed-form inverse of :func:`sequence_index`, so an index decodes without a table."""
    V, L, base = vocab_size, max_length, vocab_size - 1
    index = np.asarray(index, dtype=np.int64)
    starts = np.array([count_sequences(V, k - 1) if k else 0 for k in range(L + 1)])  # first index per length
    length = np.searchsorted(starts, index, side="right") - 1
    value = index - starts[length]
    tokens = np.empty((len(index), L), dtype=np.int64)
    for t in range(L):  # content digit t of a length-k sequence: base-(V−1) digit k−1−t of its value
        digit = value // base ** np.maximum(length - 1 - t, 0) % base + 1
        tokens[:, t] = np.where(t < length, digit, np.where(t == length, EOS, V))
    return tokens


def sequence_features(tokens: np.ndarray, vocab_size: int, max_length: int) -> np.ndarray:
    """ψ(y) [n, F]: unigram counts (V−1), bigram counts ((V−1)²) of the content and a one-hot
    of the content length (L+1)."""
    V, L, n = vocab_size, max_length, len(tokens)
    content = (tokens >= 1) & (tokens < V)
    alive = np.cumprod(content, axis=1).astype(bool)
    uni = np.zeros((n, V - 1))
    bi = np.zeros((n, (V - 1) ** 2))
    rows = np.arange(n)
    for t in range(L):
        np.add.at(uni, (rows[alive[:, t]], tokens[alive[:, t], t] - 1), 1.0)
        if t:
            ok = alive[:, t]
            np.add.at(bi, (rows[ok], (tokens[ok, t - 1] - 1) * (V - 1) + tokens[ok, t] - 1), 1.0)
    length = np.eye(L + 1)[alive.sum(1)]
    return np.concatenate([uni, bi, length], axis=1)


def decision_counts(lengths: np.ndarray | torch.Tensor, max_length: int):
    """Token decisions of a sequence: its content plus EOS, or L when it fills the length."""
    return (lengths + 1).clip(max=max_length)


class SequenceSet:
    """The enumerated sequences of a vocabulary of ``vocab_size`` ids and length ``max_length``.

    Attributes: ``vocab_size`` V, ``max_length`` L, ``tokens`` [S, L] (EOS after the content, then
    the pad id V), ``lengths`` [S] (content lengths), ``steps`` [S] (token decisions).
    """

    def __init__(self, vocab_size: int, max_length: int):
        self.vocab_size, self.max_length = vocab_size, max_length
        self.tokens, self.lengths = enumerate_sequences(vocab_size, max_length)
        self.steps = decision_counts(self.lengths, max_length)

    def __len__(self) -> int:
        return len(self.tokens)

    def index(self, tokens) -> np.ndarray:
        """Sequence indices of token rows [n, L] (numpy)."""
        return sequence_index(torch.as_tensor(np.asarray(tokens, dtype=np.int64)), self.vocab_size).numpy()

    def decode(self, index: int) -> str:
        """Readable form of one sequence, e.g. ``'3 1 <eos>'``."""
        names = ["<eos>" if t == EOS else str(int(t)) for t in self.tokens[index] if t < self.vocab_size]
        return " ".join(names) if names else "<empty>"

    def distribution(self, n_contexts: int, next_token_probs) -> np.ndarray:
        """Exact sequence distribution [X, S] of any token-level agent.

        ``next_token_probs(contexts [n], tokens [n, L], lengths [n]) -> [n, V]`` gives the agent's
        next-token law after the prefix ``tokens[:, :length]`` (padded with V, as in the env's
        observation); it is called once, on every (prompt, prefix) pair of the enumeration.
        """
        X, (S, L) = n_contexts, self.tokens.shape
        ctx = np.repeat(np.arange(X), S * L)
        pos = np.tile(np.arange(L), X * S)
        prefix = np.tile(np.repeat(self.tokens, L, axis=0), (X, 1))
        prefix = np.where(np.arange(L)[None] < pos[:, None], prefix, self.vocab_size)
        probs = np.asarray(next_token_probs(ctx, prefix, pos), dtype=np.float64).reshape(X, S, L, -1)
        picked = np.take_along_axis(probs, self.tokens.clip(max=self.vocab_size - 1)[None, :, :, None], -1)[..., 0]
        picked = np.where(np.arange(L)[None, None] < self.steps[None, :, None], picked, 1.0)
        return picked.prod(-1)
