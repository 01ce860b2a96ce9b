"""Token-level LM alignment games: an autoregressive episode over a small vocabulary whose
sequence set is enumerable, so the ground truth is an ordinary :class:`PreferenceGame`.

A *sequence* is a run of 0..L content tokens (ids 1..V−1) closed by EOS (id 0) when it is
shorter than L; the S = Σ_{k=0..L} (V−1)^k sequences of a prompt are enumerated in short-lex
order (all of length 0, then 1, …; lexicographic within a length), and a sequence's index is a
closed-form function of its tokens (:func:`sequence_index`), so "response y" of the game is a
sequence index. :class:`TokenGame` is a :class:`PreferenceGame` over those indices: P, π_ref,
``nash``, ``exploitability``, ``kl``, ``win_rate`` and every exact-mode algorithm apply unchanged.

Above ``MAX_EXACT_SEQUENCES`` sequences per prompt a dense P no longer fits, so
:func:`make_token_game` builds a :class:`LargeTokenGame` instead (up to ``MAX_SEQUENCES``): its
oracle computes P(y ≻ y'|x) on the fly from the two sequences' features, counted as usual, and
its exact services (``nash``, ``exploitability``, ``win_rates``, ``kl``, …) raise, so exact
metrics are off while sample-mode training still works.

The sequence-level preference comes from features of the tokens (:func:`sequence_features`:
unigram and bigram counts and the length), P(y ≻ y'|x) = σ(r(x,y) − r(x,y') + c·sin(θ(x,y) −
θ(x,y'))), with r a Bradley–Terry score and θ an angle, both random linear functions of the
features and of the prompt features; c > 0 (``cyclic``) makes the game intransitive.

π_ref is the enumerated distribution of a small autoregressive torch model (:class:`TokenLM`,
a GRU) fitted in code, for a fraction of a second, to a synthetic per-prompt Markov-chain
language, never downloaded; a trainable sequence policy starts as a copy of it
(``prefzoo.algorithms.sequence_policy``).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from scipy.special import expit
from torch import nn

from .bandit import REWARD_MODES, duel
from .game import PreferenceGame, check_choice, closest_hint, env_game

EOS = 0
FAMILIES = ("bt", "cyclic")
MAX_EXACT_SEQUENCES = 8192  # per prompt: a dense P over S sequences takes 8·S² bytes per prompt
MAX_SEQUENCES = 2**18  # per prompt, without a dense P: π_ref is still enumerated (an [X, S] table, O(X·S) fit)
_FAMILY_DEFAULTS = {"bt": {"reward_scale": 2.0, "cyclic_strength": 0.0},
                    "cyclic": {"reward_scale": 1.0, "cyclic_strength": 3.0}}
_UNDECIDED = float("nan")  # info["win_prob"] before the episode ends (one object: equal to itself)


# ---------------------------------------------------------------- sequence structure
def count_sequences(vocab_size: int, max_length: int) -> int:
    """S = Σ_{k=0..L} (V−1)^k: content lengths 0..L (EOS-terminated below L)."""
    return sum((vocab_size - 1) ** k for k in range(max_length + 1))


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


# ---------------------------------------------------------------- the autoregressive model
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


# ---------------------------------------------------------------- the preference
def preference_probability(r, theta, r2, theta2, cyclic_strength: float):
    """P(y ≻ y'|x) = σ(r − r' + c·sin(θ − θ')) from the scores of the two sequences (arrays
    broadcast), as ½(σ(m) + 1 − σ(−m)) so that P + Pᵀ = 1 holds to rounding."""
    margin = r - r2
    if cyclic_strength:
        margin = margin + cyclic_strength * np.sin(theta - theta2)
    return 0.5 * (expit(margin) + 1.0 - expit(-margin))


class SequencePreference:
    """The token games' preference: :func:`preference_probability` of the scores (r, θ)(x, y) =
    W_x·ψ(y), linear in the sequence features ψ (:func:`sequence_features`).

    ``pref[x, y, y2]`` (integer index arrays, broadcast, like a dense P) evaluates it on the fly,
    vectorized: indices → tokens (:func:`sequence_tokens`) → features → scores, with no table over
    sequences; it is the ``P`` of a :class:`LargeTokenGame`. :meth:`dense` evaluates every pair:
    the ``P`` of a :class:`TokenGame`. One formula serves both.

    Args:
        weights: [2, X, F] per-prompt weights of r (row 0) and θ (row 1) over the F features.
        cyclic_strength: c ≥ 0 (0: Bradley–Terry).
        vocab_size: V.
        max_length: L.
    """

    def __init__(self, weights: np.ndarray, cyclic_strength: float, vocab_size: int, max_length: int):
        self.weights, self.cyclic_strength = weights, cyclic_strength
        self.vocab_size, self.max_length = vocab_size, max_length
        S = count_sequences(vocab_size, max_length)
        self.shape = (weights.shape[1], S, S)

    def scores(self, contexts, responses) -> np.ndarray:
        """(r, θ) [2, n] of the sequences with indices ``responses`` [n] in ``contexts`` [n]."""
        V, L = self.vocab_size, self.max_length
        psi = sequence_features(sequence_tokens(responses, V, L), V, L)
        return np.einsum("knf,nf->kn", self.weights[:, contexts], psi)

    def __getitem__(self, index) -> np.ndarray:
        x, y, y2 = np.broadcast_arrays(*index)
        n = x.size
        (r, r2), (theta, theta2) = self.scores(np.tile(x.ravel(), 2),
                                               np.concatenate([y.ravel(), y2.ravel()])).reshape(2, 2, n)
        return preference_probability(r, theta, r2, theta2, self.cyclic_strength).reshape(x.shape)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """P [X, S, S] over every pair, and the reward table r [X, S]."""
        tokens, _ = enumerate_sequences(self.vocab_size, self.max_length)
        psi = sequence_features(tokens, self.vocab_size, self.max_length)
        r, theta = (w @ psi.T for w in self.weights)
        P = preference_probability(r[:, :, None], theta[:, :, None], r[:, None, :], theta[:, None, :],
                                   self.cyclic_strength)
        return P, r


# ---------------------------------------------------------------- the game
class TokenGame(PreferenceGame):
    """A :class:`PreferenceGame` whose responses are the enumerated token sequences.

    Extra attributes: ``vocab_size`` V, ``max_length`` L, ``tokens`` [S, L] (padded with V),
    ``lengths`` [S] (content lengths), ``steps`` [S] (token decisions), ``ref_model_kwargs``
    and ``ref_state`` (the π_ref :class:`TokenLM`; :meth:`ref_model` rebuilds it), ``preference``
    (the :class:`SequencePreference` that P was built from, when known), :meth:`index` (tokens →
    sequence index).
    """

    def __init__(self, P, ref, rho, features, rewards, family, seed, *, vocab_size: int, max_length: int,
                 ref_model_kwargs: dict[str, Any], ref_state: dict[str, torch.Tensor],
                 preference: SequencePreference | None = None):
        super().__init__(P, ref, rho, features, rewards, family=family, seed=seed)
        self._set_sequences(vocab_size, max_length, ref_model_kwargs, ref_state, preference)

    def _set_sequences(self, vocab_size, max_length, ref_model_kwargs, ref_state, preference):
        self.vocab_size, self.max_length = vocab_size, max_length
        self.tokens, self.lengths = enumerate_sequences(vocab_size, max_length)
        self.steps = decision_counts(self.lengths, max_length)
        self.ref_model_kwargs, self.ref_state, self.preference = ref_model_kwargs, ref_state, preference

    def ref_model(self, device: torch.device | str = "cpu") -> TokenLM:
        """A fresh copy of π_ref's model (its enumerated distribution is ``self.ref``)."""
        model = TokenLM(**self.ref_model_kwargs)
        model.load_state_dict(self.ref_state)
        return model.to(device)

    def index(self, tokens) -> np.ndarray:
        """Sequence indices of token rows [n, L] (numpy)."""
        return sequence_index(torch.as_tensor(np.asarray(tokens, dtype=np.int64)), self.vocab_size).numpy()

    def sequence_distribution(self, next_token_probs) -> np.ndarray:
        """Exact sequence distribution [X, S] of any token-level agent.

        ``next_token_probs(contexts [n], tokens [n, L], lengths [n]) -> [n, V]`` gives the agent's
        next-token law after the prefix ``tokens[:, :length]`` (padded with V, as in the env's
        observation); it is called once, on every (prompt, prefix) pair of the enumeration.
        """
        X, (S, L) = self.n_contexts, self.tokens.shape
        ctx = np.repeat(np.arange(X), S * L)
        pos = np.tile(np.arange(L), X * S)
        prefix = np.tile(np.repeat(self.tokens, L, axis=0), (X, 1))
        prefix = np.where(np.arange(L)[None] < pos[:, None], prefix, self.vocab_size)
        probs = np.asarray(next_token_probs(ctx, prefix, pos), dtype=np.float64).reshape(X, S, L, -1)
        picked = np.take_along_axis(probs, self.tokens.clip(max=self.vocab_size - 1)[None, :, :, None], -1)[..., 0]
        picked = np.where(np.arange(L)[None, None] < self.steps[None, :, None], picked, 1.0)
        return picked.prod(-1)

    def decode(self, index: int) -> str:
        """Readable form of one sequence, e.g. ``'3 1 <eos>'``."""
        names = ["<eos>" if t == EOS else str(int(t)) for t in self.tokens[index] if t < self.vocab_size]
        return " ".join(names) if names else "<empty>"


class LargeTokenGame(TokenGame):
    """A :class:`TokenGame` too large for a dense P (``MAX_EXACT_SEQUENCES`` < S ≤ ``MAX_SEQUENCES``).

    ``P`` is the :class:`SequencePreference` itself, so ``P[x, y, y2]`` (and through it the
    inherited, counted ``compare`` and ``prob``) computes each probability on the fly from the two
    sequences' features. π_ref is still enumerated (``ref`` [X, S]), so sampling, the env's
    default opponent and the policies' ``log_ref`` work as on any game. ``exact = False``: the
    services that sum over all sequences (``nash``, ``exploitability``, ``win_rates``,
    ``win_rate``, ``kl``) and the hidden ``reward`` raise a ``ValueError``, and
    ``Algorithm.evaluate`` reports only costs and time.
    """

    exact = False

    def __init__(self, preference: SequencePreference, ref, rho, features, family, seed, *, vocab_size: int,
                 max_length: int, ref_model_kwargs: dict[str, Any], ref_state: dict[str, torch.Tensor]):
        # PreferenceGame.__init__ validates a dense P; set the same state without one
        self.P, (self.n_contexts, self.n_actions) = preference, ref.shape
        self.rho, self.features, self.rewards, self.family = rho, features, None, family
        self.ref = self.check_policy(ref, "ref")
        self.rng, self.queries, self.exact_calls = np.random.default_rng(seed), 0, 0
        self._set_sequences(vocab_size, max_length, ref_model_kwargs, ref_state, preference)

    def _exact_metrics_off(self, *args, **kwargs):
        raise ValueError(
            f"exact metrics are off for this game: vocab_size={self.vocab_size}, max_length={self.max_length} "
            f"gives {self.n_actions:,} sequences per prompt, more than the {MAX_EXACT_SEQUENCES:,} that can be "
            f"enumerated (no dense P); sample and compare instead (game.compare, game.prob), or lower vocab_size "
            f"or max_length for exact equilibria and metrics")

    nash = exploitability = win_rates = win_rate = kl = reward = _exact_metrics_off


def _synthetic_language(rng, features, V, L):
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


def _fit_reference(features, V, L, rng, seed, hidden, fit_steps):
    """Fit a :class:`TokenLM` to the synthetic language by exact cross-entropy (over prefixes:
    one teacher-forced pass over the maximal prefixes covers every conditional), then enumerate
    its sequence distribution in float64."""
    prefixes, q, w = _synthetic_language(rng, features, V, L)
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
    return ref / ref.sum(axis=1, keepdims=True), kwargs, state


@functools.lru_cache(maxsize=16)
def _token_game_parts(family, n_contexts, vocab_size, max_length, feature_dim, seed, reward_scale,
                      cyclic_strength, hidden, ref_fit_steps):
    rng = np.random.default_rng(seed)
    V, L, X, d = vocab_size, max_length, n_contexts, feature_dim
    features = rng.normal(size=(X, d))
    rho = rng.dirichlet(np.full(X, 10.0))
    F = (V - 1) + (V - 1) ** 2 + L + 1  # the width of sequence_features
    scale = 1.0 / np.sqrt(2 * L)  # about 2L active features per sequence

    def linear():  # per-prompt weights over ψ: W·φ(x) + b
        return (features @ rng.normal(size=(d, F)) / np.sqrt(d) + 0.5 * rng.normal(size=F)) * scale

    weights = np.stack([reward_scale * linear(), 2.0 * np.pi * linear()])  # r and θ over ψ
    preference = SequencePreference(weights, cyclic_strength, V, L)
    P, rewards = preference.dense() if count_sequences(V, L) <= MAX_EXACT_SEQUENCES else (None, None)
    ref, kwargs, state = _fit_reference(features, V, L, rng, seed, hidden, ref_fit_steps)
    for array in (P, ref, rho, features, rewards, weights):
        if array is not None:
            array.setflags(write=False)  # cached and shared by every game built from these arguments
    return preference, P, ref, rho, features, rewards, kwargs, state


def make_token_game(family: str = "bt", n_contexts: int = 8, vocab_size: int = 6, max_length: int = 4,
                    feature_dim: int = 4, seed: int | None = 0, reward_scale: float | None = None,
                    cyclic_strength: float | None = None, hidden: int = 32,
                    ref_fit_steps: int = 60) -> TokenGame:
    """Build a seeded :class:`TokenGame` (cached per argument set; every call returns a fresh
    game object with its own counters).

    With more than ``MAX_EXACT_SEQUENCES`` (8,192) sequences per prompt the game is a
    :class:`LargeTokenGame`: the same game (same seed, same P entrywise) without a dense P, exact
    metrics off. Building it enumerates and fits π_ref in O(X·S) time (V = 8, L = 6, 8 prompts:
    about 2 minutes on one CPU thread).

    Raises:
        ValueError: an unknown family, an out-of-range size, or a sequence set larger than
            ``MAX_SEQUENCES`` per prompt (the message says what to change).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}{closest_hint(family, FAMILIES)}; expected one of {FAMILIES}")
    for name, value, low in (("n_contexts", n_contexts, 1), ("vocab_size", vocab_size, 2),
                             ("max_length", max_length, 1), ("feature_dim", feature_dim, 1),
                             ("hidden", hidden, 2), ("ref_fit_steps", ref_fit_steps, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    S = count_sequences(vocab_size, max_length)
    if S > MAX_SEQUENCES:
        raise ValueError(
            f"vocab_size={vocab_size}, max_length={max_length} gives {S:,} sequences per prompt, more than "
            f"the {MAX_SEQUENCES:,} a token game holds (π_ref is enumerated into an [X, S] table and fitted "
            f"in O(X·S) time); lower vocab_size or max_length (exact metrics need S <= {MAX_EXACT_SEQUENCES:,}: "
            f"V=6, L=4 gives 781)")
    defaults = _FAMILY_DEFAULTS[family]
    reward_scale = defaults["reward_scale"] if reward_scale is None else float(reward_scale)
    cyclic_strength = defaults["cyclic_strength"] if cyclic_strength is None else float(cyclic_strength)
    preference, P, ref, rho, features, rewards, kwargs, state = _token_game_parts(
        family, int(n_contexts), int(vocab_size), int(max_length), int(feature_dim), seed, reward_scale,
        cyclic_strength, int(hidden), int(ref_fit_steps))
    ref, rho, features = (np.array(a) for a in (ref, rho, features))  # own copies
    sizes = {"vocab_size": int(vocab_size), "max_length": int(max_length), "ref_model_kwargs": dict(kwargs),
             "ref_state": state}
    if P is None:
        return LargeTokenGame(preference, ref, rho, features, family, seed, **sizes)
    return TokenGame(np.array(P), ref, rho, features, np.array(rewards), family, seed, preference=preference,
                     **sizes)


# ---------------------------------------------------------------- the environment
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
    (``game.ref_model()``).

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
    | ``log_win_rate`` | log P(y ≻ opponent \\| x) |

    ## Starting State
    x ~ ρ from ``self.np_random``; no tokens.

    ## Episode End
    ``terminated=True`` when the agent emits EOS or the L-th token; ``truncated`` is always False.

    ## Arguments
    | kwarg | default | meaning |
    |---|---|---|
    | ``family`` | ``"bt"`` | ``"bt"`` or ``"cyclic"`` (fixed by the registered id) |
    | ``n_contexts``, ``vocab_size``, ``max_length``, ``feature_dim`` | 8, 6, 4, 4 | game size (S ≤ 8,192: exact; ≤ 2^18: :class:`LargeTokenGame`) |
    | ``seed`` | 0 | seed of the game and of π_ref's fit (``reset(seed=…)`` seeds episodes) |
    | other :func:`make_token_game` kwargs | | ``reward_scale``, ``cyclic_strength``, ``hidden``, … |
    | ``game`` | None | a prebuilt :class:`TokenGame` instead of the kwargs above |
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

    def __init__(self, family: str = "bt", game: TokenGame | None = None, reward_mode: str = "comparison",
                 opponent: np.ndarray | None = None, render_mode: str | None = None, **game_kwargs: Any):
        check_choice("reward_mode", reward_mode, REWARD_MODES)
        self.game = env_game(make_token_game, game, family, **game_kwargs)
        self.reward_mode, self.render_mode = reward_mode, render_mode
        self.set_opponent(self.game.ref if opponent is None else opponent)
        V, L = self.game.vocab_size, self.game.max_length
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
        self._tokens[:] = self.game.vocab_size
        self._length = 0
        self._last = f"prompt {self._context}: <start>"
        return self._obs(), {"context": self._context}

    # info keys before the episode's last step (NaN is one object, so equal to itself)
    _pending_info = {"sequence": -1, "opponent_action": -1, "win_prob": _UNDECIDED}

    def step(self, action):
        if self._context is None:
            raise RuntimeError("call reset() before step() (the episode has ended or never started)")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a token id in {self.action_space} (0 = EOS, 1..{self.game.vocab_size - 1}), "
                             f"got {action!r}")
        self._tokens[self._length] = int(action)
        self._length += 1
        info = {"context": self._context, **self._pending_info}
        if int(action) != EOS and self._length < self.game.max_length:
            self._last = f"prompt {self._context}: {self._tokens[:self._length].tolist()}"
            return self._obs(), 0.0, False, False, info
        seq = int(self.game.index(self._tokens[None])[0])
        reward, outcome, text = self._score(self._context, seq)
        info.update(sequence=seq, **outcome)
        self._last = f"prompt {self._context}: '{self.game.decode(seq)}' {text}, reward={reward:.3f}"
        obs = self._obs()
        self._context = None
        return obs, reward, True, False, info

    def _score(self, x: int, seq: int) -> tuple[float, dict, str]:
        """Reward of the finished sequence, its ``info`` entries and a render fragment."""
        reward, opp, win_prob = duel(self.game, np.array([x]), np.array([seq]), self.opponent, self.reward_mode,
                                     self.np_random)
        text = f"vs '{self.game.decode(int(opp[0]))}', P(win)={win_prob[0]:.3f}"
        return float(reward[0]), {"opponent_action": int(opp[0]), "win_prob": float(win_prob[0])}, text

    def render(self):
        if self.render_mode == "ansi":
            return self._last + "\n"
        return None
