"""Token-level LM alignment games: an autoregressive episode over a small vocabulary.

A response is a token sequence, identified by its short-lex index (:mod:`prefzoo.envs.sequences`);
π_ref is the enumerated distribution of a small GRU fitted in code (:mod:`prefzoo.envs.token_lm`).
Two games share that structure (``sequences``, ``ref_lm``, ``responses = "tokens"``):

- :class:`TokenGame`, an exact :class:`~prefzoo.envs.game.PreferenceGame` over the sequence indices
  (dense P, ``nash``, ``exploitability``, every exact-mode algorithm), while a dense P fits
  (S ≤ ``MAX_EXACT_SEQUENCES`` sequences per prompt);
- :class:`TokenOracle`, a counted oracle that evaluates a preference *function* of the two
  sequences' tokens on the fly, with no exact services (``exact`` False; its sequences are listed):
  :func:`make_token_game` builds it above the dense-P limit (the same preference, entrywise), or
  around any Python callable ``preference(x, tokens, tokens2) -> P`` a user passes, so that
  sample-mode algorithms train against arbitrary sequence preferences unchanged.

The built-in sequence-level preference comes from features of the tokens
(:func:`~prefzoo.envs.sequences.sequence_features`: unigram and bigram counts and the length),
P(y ≻ y'|x) = σ(r(x,y) − r(x,y') + c·sin(θ(x,y) − θ(x,y'))), with r a Bradley–Terry score and θ an
angle, both random linear functions of the features and of the prompt features; c > 0
(``cyclic``) makes the game intransitive.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from scipy.special import expit

from .checks import check_choice, check_int, check_memory, check_real
from .game import FAMILY_DEFAULTS, PreferenceGame
from .oracle import PreferenceOracle
from .sequences import SequenceSet, count_sequences, enumerate_sequences, sequence_features
from .token_lm import ReferenceLM, fit_reference

FAMILIES = ("bt", "cyclic")
MAX_EXACT_SEQUENCES = 8192  # per prompt: a dense P over S sequences takes 8·S² bytes per prompt
MAX_SEQUENCES = 2**18  # per prompt, without a dense P: π_ref is still enumerated (an [X, S] table, O(X·S) fit)


# ---------------------------------------------------------------- the preference
def preference_probability(r, theta, r2, theta2, cyclic_strength: float):
    """P(y ≻ y'|x) = σ(r − r' + c·sin(θ − θ')) from the scores of the two sequences (arrays
    broadcast), as ½(σ(m) + 1 − σ(−m)) so that P + Pᵀ = 1 holds to rounding."""
    margin = r - r2
    if cyclic_strength:
        margin = margin + cyclic_strength * np.sin(theta - theta2)
    return 0.5 * (expit(margin) + 1.0 - expit(-margin))



class SequencePreference:
    """The token games' built-in preference: :func:`preference_probability` of the scores
    (r, θ)(x, y) = W_x·ψ(y), linear in the sequence features ψ (``sequence_features``).

    Calling it on token rows, ``pref(x [n], tokens [n, L], tokens2 [n, L]) -> [n]``, evaluates it on
    the fly (the preference function of a :class:`TokenOracle`); :meth:`dense` evaluates every pair
    (the ``P`` of a :class:`TokenGame`). One formula serves both.

    Args:
        weights: [2, X, F] per-prompt weights of r (row 0) and θ (row 1) over the F features.
        cyclic_strength: c ≥ 0 (0: Bradley–Terry).
        vocab_size: V.
        max_length: L.
    """

    def __init__(self, weights: np.ndarray, cyclic_strength: float, vocab_size: int, max_length: int):
        self.weights, self.cyclic_strength = weights, cyclic_strength
        self.vocab_size, self.max_length = vocab_size, max_length

    def scores(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(r, θ) [2, n] of the token rows ``tokens`` [n, L] in ``contexts`` [n]."""
        psi = sequence_features(tokens, self.vocab_size, self.max_length)
        return np.einsum("knf,nf->kn", self.weights[:, contexts], psi)

    def __call__(self, x: np.ndarray, tokens: np.ndarray, tokens2: np.ndarray) -> np.ndarray:
        (r, theta), (r2, theta2) = self.scores(x, tokens), self.scores(x, tokens2)
        return preference_probability(r, theta, r2, theta2, self.cyclic_strength)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """P [X, S, S] over every pair, and the reward table r [X, S]."""
        tokens, _ = enumerate_sequences(self.vocab_size, self.max_length)
        psi = sequence_features(tokens, self.vocab_size, self.max_length)
        r, theta = (w @ psi.T for w in self.weights)
        P = preference_probability(r[:, :, None], theta[:, :, None], r[:, None, :], theta[:, None, :],
                                   self.cyclic_strength)
        return P, r


# ---------------------------------------------------------------- the games
class TokenGame(PreferenceGame):
    """An exact :class:`~prefzoo.envs.game.PreferenceGame` whose responses are the enumerated token
    sequences: P, π_ref, ``nash``, ``exploitability``, ``kl``, ``win_rate`` apply unchanged.

    Extra attributes: ``sequences`` (the :class:`~prefzoo.envs.sequences.SequenceSet`: ``tokens``,
    ``index``, ``decode``, …), ``ref_lm`` (π_ref's model, :class:`~prefzoo.envs.token_lm.ReferenceLM`)
    and ``sequence_preference`` (the :class:`SequencePreference` P was built from, when known).
    """

    responses = "tokens"

    def __init__(self, P, ref, rho, features, rewards, family, seed, *, sequences: SequenceSet,
                 ref_lm: ReferenceLM, sequence_preference: SequencePreference | None = None):
        super().__init__(P, ref, rho, features, rewards, family=family, seed=seed)
        self.sequences, self.ref_lm, self.sequence_preference = sequences, ref_lm, sequence_preference


class TokenOracle(PreferenceOracle):
    """A token game known through its oracle only: P(y ≻ y'|x) = ``preference(x, tokens_y, tokens_y')``
    evaluated on the fly for the compared pairs (counted as usual), no dense P, no exact services.

    π_ref is still enumerated (``ref`` [X, S], S ≤ ``MAX_SEQUENCES``: its responses are listed), so
    sampling, the env's default opponent and the policies' ``log_ref`` work as on any token game;
    :meth:`~prefzoo.envs.oracle.PreferenceOracle.evaluate` estimates the win rate against π_ref.

    Args:
        preference: ``preference(x [n], tokens [n, L], tokens2 [n, L]) -> [n]`` probabilities in
            [0, 1] (token rows padded with V after EOS, as ``sequences.tokens``); a
            :class:`SequencePreference` or any Python callable. P + Pᵀ = 1 is the caller's
            promise (it is what makes the game symmetric); values are checked to be in [0, 1].
        sequences, ref_lm, ref, rho, features, family, seed: as for :class:`TokenGame`.
    """

    responses = "tokens"
    payoff = "preference"
    exact = False
    listed = True

    def __init__(self, preference: Callable[[np.ndarray, np.ndarray, np.ndarray], Any], ref, rho, features,
                 family: str, seed: int | None, *, sequences: SequenceSet, ref_lm: ReferenceLM):
        if not callable(preference):
            raise ValueError(f"preference must be a callable (x, tokens, tokens2) -> P(y ≻ y2 | x), got "
                             f"{type(preference).__name__}")
        super().__init__(np.shape(ref)[0], rho, features, ref, seed)
        self.preference_fn, self.family = preference, family
        self.sequences, self.ref_lm = sequences, ref_lm

    @property
    def why_not_exact(self) -> str:
        if self.n_actions > MAX_EXACT_SEQUENCES:
            return (f"vocab_size={self.sequences.vocab_size}, max_length={self.sequences.max_length} gives "
                    f"{self.n_actions:,} sequences per prompt, more than the {MAX_EXACT_SEQUENCES:,} a dense P holds; "
                    "lower vocab_size or max_length for exact equilibria and metrics")
        return "its preference is a function evaluated pair by pair, with no dense P"

    def preference(self, x, y, y2) -> np.ndarray:
        tokens = self.sequences.tokens
        p = np.asarray(self.preference_fn(x.ravel(), tokens[y.ravel()], tokens[y2.ravel()]), dtype=np.float64)
        if p.shape != (x.size,) or not np.all((p >= 0) & (p <= 1)):
            name = getattr(self.preference_fn, "__name__", type(self.preference_fn).__name__)
            raise ValueError(f"preference function {name!r} must return {x.size} probabilities in [0, 1] for "
                             f"{x.size} pairs; got shape {list(p.shape)} with values {p.ravel()[:4]}…")
        return p.reshape(x.shape)


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
    ref, ref_lm = fit_reference(features, V, L, rng, seed, hidden, ref_fit_steps)
    for array in (P, ref, rho, features, rewards, weights):
        if array is not None:
            array.setflags(write=False)  # cached and shared by every game built from these arguments
    return preference, P, ref, rho, features, rewards, ref_lm



def check_token_sizes(n_contexts: int, vocab_size: int, max_length: int) -> int:
    """The number S of sequences per prompt, after checking that the enumeration fits: S ≤
    ``MAX_SEQUENCES`` and the π_ref fit's float64 logits over every (prompt, sequence, position),
    8·X·S·L·V bytes, within the memory limit of :func:`~prefzoo.envs.checks.check_memory`. Closed
    form, so a huge size fails at once.

    Raises:
        ValueError: naming the sizes, the count or memory they would take, and the limit.
    """
    V, L, X = vocab_size, max_length, n_contexts
    if L * np.log10(V - 1) > 100:  # S > (V−1)^L: too many digits to be worth writing out
        raise ValueError(f"vocab_size={V}, max_length={L} gives more than (V−1)^L = 10^{L * np.log10(V - 1):.0f} "
                         f"sequences per prompt, more than the {MAX_SEQUENCES:,} a token game holds; lower vocab_size "
                         "or max_length")
    S = count_sequences(V, L)
    hint = f"lower vocab_size or max_length (exact metrics need S <= {MAX_EXACT_SEQUENCES:,}: V=6, L=4 gives 781)"
    if S > MAX_SEQUENCES:
        raise ValueError(f"vocab_size={V}, max_length={L} gives {S:,} sequences per prompt, more than the "
                         f"{MAX_SEQUENCES:,} a token game holds (π_ref is enumerated into an [X, S] table); {hint}")
    check_memory(f"vocab_size={V}, max_length={L} gives {S:,} sequences per prompt; enumerating π_ref for "
                 f"n_contexts={X} (8·X·S·L·V bytes)", 8 * X * S * L * V, hint)
    return S


def make_token_game(family: str = "bt", n_contexts: int = 8, vocab_size: int = 6, max_length: int = 4,
                    feature_dim: int = 4, seed: int | None = 0, reward_scale: float | None = None,
                    cyclic_strength: float | None = None, hidden: int = 32, ref_fit_steps: int = 60,
                    preference: Callable | None = None) -> TokenGame | TokenOracle:
    """Build a seeded token game (cached per argument set; every call returns a fresh game object
    with its own counters).

    A :class:`TokenGame` (exact) up to ``MAX_EXACT_SEQUENCES`` (8,192) sequences per prompt; above,
    a :class:`TokenOracle` of the same preference (same seed, same P entrywise) without a dense P.
    Building it enumerates and fits π_ref in O(X·S) time (V = 8, L = 6, 8 prompts: about 2 minutes
    on one CPU thread). With ``preference`` (a callable ``(x [n], tokens [n, L], tokens2 [n, L]) ->
    [n]``), a :class:`TokenOracle` of that function over the same sequences and π_ref (``family``,
    ``reward_scale`` and ``cyclic_strength`` then only seed the unused built-in preference).

    Raises:
        ValueError: an unknown family, an out-of-range size, or a sequence set too large to
            enumerate (:func:`check_token_sizes`; the message says what to change).
    """
    check_choice("family", family, FAMILIES)
    n_contexts, vocab_size = check_int("n_contexts", n_contexts, low=1), check_int("vocab_size", vocab_size, low=2)
    max_length, feature_dim = check_int("max_length", max_length, low=1), check_int("feature_dim", feature_dim, low=1)
    hidden, ref_fit_steps = check_int("hidden", hidden, low=2), check_int("ref_fit_steps", ref_fit_steps, low=0)
    if seed is not None:
        seed = check_int("seed", seed, low=0)
    S = check_token_sizes(n_contexts, vocab_size, max_length)
    defaults = FAMILY_DEFAULTS[family]
    reward_scale = check_real("reward_scale", defaults["reward_scale"] if reward_scale is None else reward_scale, 0)
    cyclic_strength = check_real("cyclic_strength",
                                 defaults["cyclic_strength"] if cyclic_strength is None else cyclic_strength, 0)
    built_in, P, ref, rho, features, rewards, ref_lm = _token_game_parts(
        family, n_contexts, vocab_size, max_length, feature_dim, seed, reward_scale, cyclic_strength, hidden,
        ref_fit_steps)
    ref, rho, features = (np.array(a) for a in (ref, rho, features))  # own copies
    structure = {"sequences": _sequence_set(vocab_size, max_length), "ref_lm": ref_lm}
    if preference is not None or S > MAX_EXACT_SEQUENCES:
        return TokenOracle(built_in if preference is None else preference, ref, rho, features, family, seed,
                           **structure)
    return TokenGame(np.array(P), ref, rho, features, np.array(rewards), family, seed,
                     sequence_preference=built_in, **structure)


@functools.lru_cache(maxsize=16)
def _sequence_set(vocab_size: int, max_length: int) -> SequenceSet:
    """The enumeration of (V, L), shared by every game of that size (its arrays are read-only)."""
    sequences = SequenceSet(vocab_size, max_length)
    for array in (sequences.tokens, sequences.lengths, sequences.steps):
        array.setflags(write=False)
    return sequences
