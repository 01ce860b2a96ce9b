"""AnswerTokenGame: a token game with exact equilibria at any size (design §3, issue 20).

π_ref is a finite-state language model: a deterministic automaton s' = δ(s, v) from s₀ = 0 and a
next-token law q(v | s, x); a response is a row of exactly L tokens (V^L per prompt). Its answer
a(y) = (Σ_t w[y_t]) mod K is a finite-state accumulator, and the preference depends on a response
only through it: P(y ≻ y' | x) = Q(a(y) ≻ a(y') | x), Q a bandit family's [X, K, K]. Then
P(y ≻ π | x) = (Q ν_π)(a(y)) with ν_π the answer marginal, so the regularized equilibrium is
π*_β(y) = π_ref(y)·exp(g(a(y))/β)/Z with g = Q ν*, and ν* ∝ μ·exp(Qν*/β) is the equilibrium of the
K-answer game whose reference is π_ref's answer marginal μ (:attr:`AnswerTokenGame.answer_game`).
Every exact service is a dynamic program over (position, state, partial answer), O(X·L·S·K·V),
with no enumeration: the policies of this game (:class:`FiniteStatePolicy`) are next-token tables
over (t, s, c), which π_ref, π*_β and every tilt of π_ref by a function of the answer are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from scipy import sparse
from scipy.special import logsumexp, softmax

from . import metrics
from .checks import check_array, check_choice, check_int, check_memory, check_real
from .game import PreferenceGame, env_game, make_game, soft_best_response_value
from .oracle import PreferenceOracle, iid_mean_se, kl_divergence, sample_categorical, sample_table_rows
from .token_episode import Ending, TokenEpisode, TokenEpisodeEnv


class FiniteStatePolicy:
    """π(y|x) = Π_t p(y_t | x, t, s_t, c_t) over rows of exactly L tokens, with s_t the reference
    automaton's state and c_t the partial answer before token t.

    Args:
        game: the :class:`AnswerTokenGame` whose automaton it runs on.
        log_probs: log p, [X, L, S, K, V] (broadcast views allowed), each row normalized over V.
    """

    def __init__(self, game: AnswerTokenGame, log_probs: np.ndarray):
        self.game, self.log_probs = game, log_probs
        self._occupancy: np.ndarray | None = None

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exact samples: token rows [n, L] for contexts [n]."""
        contexts = np.asarray(contexts)
        n, L = len(contexts), self.game.max_length
        tokens = np.empty((n, L), dtype=np.int64)
        state, partial = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        for t in range(L):
            tokens[:, t] = sample_categorical(np.exp(self.log_probs[contexts, t, state, partial]), rng)
            state, partial = self.game.advance(state, partial, tokens[:, t])
        return tokens

    def log_prob(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Exact log π(y|x) of token rows [n, L], [n]."""
        contexts, tokens = np.asarray(contexts), self.game.check_tokens(tokens)
        states, partials, _ = self.game.walk(tokens)
        t = np.arange(tokens.shape[1])
        return self.log_probs[contexts[:, None], t, states, partials, tokens].sum(axis=1)

    def occupancy(self) -> np.ndarray:
        """Pr(s_t = s, c_t = c | x), [L+1, X, S, K], by the forward dynamic program; computed once (an
        evaluation reads it for the answer marginal and every KL; ``log_probs`` is never changed), read-only."""
        if self._occupancy is None:
            game = self.game
            X, L, S, K = game.n_contexts, game.max_length, game.n_states, game.n_answers
            occ = np.zeros((L + 1, X, S * K))
            occ[0, :, 0] = 1.0
            for t in range(L):
                mass = occ[t].reshape(X, S, K, 1) * np.exp(self.log_probs[:, t])
                occ[t + 1] = game.transitions.T.dot(mass.reshape(X, -1).T).T
            self._occupancy = occ.reshape(L + 1, X, S, K)
            self._occupancy.flags.writeable = False
        return self._occupancy

    def answer_marginal(self) -> np.ndarray:
        """ν_π(a | x), [X, K]."""
        return self.occupancy()[-1].sum(axis=1)

    def kl(self, other: FiniteStatePolicy) -> np.ndarray:
        """KL(π ‖ other) over whole sequences, per context [X]: Σ_t E_π[KL(p_t ‖ other_t)] (exact)."""
        occ = self.occupancy()[:-1]  # [L, X, S, K]
        step = kl_divergence(self.log_probs, other.log_probs)  # [X, L, S, K]
        return np.einsum("txsc,xtsc->x", occ, step)


class CandidatePolicy:
    """π(y|x) = Σ_j p[x, j]·1[y = y_j(x)]: a distribution over M token rows per prompt (e.g. M
    draws from π_ref, :class:`~prefzoo.algorithms.estimate_then_solve.EstimateThenSolve` with
    ``candidates=M``). Its answer marginal and KL to a :class:`FiniteStatePolicy` are exact (a row
    drawn twice counts once, with the sum of its weights); KL to it of a full-support policy is ∞.

    Args:
        game: the :class:`AnswerTokenGame`. rows: token rows [X, M, L]. probs: p [X, M], rows summing to 1.
    """

    def __init__(self, game: AnswerTokenGame, rows: np.ndarray, probs: np.ndarray):
        rows = np.asarray(rows)
        if rows.ndim != 3 or rows.shape[0] != game.n_contexts:
            raise ValueError(f"rows must be token rows [X, M, L] with X = {game.n_contexts}, got shape {rows.shape}")
        self.game, self.probs = game, check_array("probs", probs, rows.shape[:2], simplex=True)
        self.rows = game.check_tokens(rows.reshape(-1, game.max_length)).reshape(rows.shape)
        self.answers = game.answers(None, self.rows.reshape(-1, game.max_length)).reshape(self.probs.shape)

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exact samples: token rows [n, L] for contexts [n]."""
        contexts = np.asarray(contexts)
        return self.rows[contexts, sample_table_rows(self.probs, contexts, rng)]

    def export(self, run_dir: str | os.PathLike) -> list[Path]:
        """``candidate_policy.npz`` (``rows`` [X, M, L], ``probs`` [X, M]) in ``run_dir``; returns the path."""
        path = Path(run_dir) / "candidate_policy.npz"
        np.savez(path, rows=self.rows, probs=self.probs)
        return [path]

    def answer_marginal(self) -> np.ndarray:
        """ν_π(a | x), [X, K]."""
        X, K = self.game.n_contexts, self.game.n_answers
        flat = (np.arange(X)[:, None] * K + self.answers).ravel()
        return np.bincount(flat, weights=self.probs.ravel(), minlength=X * K).reshape(X, K)

    def kl(self, other: FiniteStatePolicy) -> np.ndarray:
        """KL(π ‖ other) per context [X], exact: Σ_y π(y)·(log π(y) − log other(y)) over the distinct rows."""
        out = np.zeros(self.game.n_contexts)
        for x, (rows, p) in enumerate(zip(self.rows, self.probs, strict=True)):
            unique, inverse = np.unique(rows, axis=0, return_inverse=True)
            mass = np.bincount(inverse.ravel(), weights=p, minlength=len(unique))
            keep = mass > 0
            log_other = other.log_prob(np.full(keep.sum(), x), unique[keep])
            out[x] = np.sum(mass[keep] * (np.log(mass[keep]) - log_other))
        return out


class SampledPolicy:
    """A policy of an :class:`AnswerTokenGame` known through its samples and the log-probabilities
    of token rows (a neural sequence policy): the game estimates its metrics by Monte Carlo
    (:meth:`AnswerTokenGame.kl_estimate`), logged under ``est/`` with standard errors.

    Args:
        game: the game. sample: ``(contexts [n], rng) -> token rows [n, L]``.
        log_prob: ``(contexts [n], token rows [n, L]) -> log π(y|x) [n]``.
    """

    def __init__(self, game: AnswerTokenGame, sample, log_prob):
        self.game, self.sample, self.log_prob = game, sample, log_prob


class Estimate(float):
    """A Monte Carlo estimate: the value as a float, its standard error as ``se``."""

    def __new__(cls, value: float, se: float):
        estimate = super().__new__(cls, value)
        estimate.se = float(se)
        return estimate


class AnswerTokenGame(PreferenceOracle):
    """Token responses of exactly L tokens, π_ref a finite-state LM, P a bandit family's over answers.

    Exact services without a dense P or a listed response set (module docstring):
    :attr:`reference` and :meth:`nash` as :class:`FiniteStatePolicy` objects (exact ``sample`` and
    ``log_prob``), :meth:`answers`, :attr:`answer_game`, :meth:`exploitability` and :meth:`kl` of
    finite-state policies. The counted oracle's responses are handles of token rows the game has
    seen (:meth:`add_rows`; :meth:`sample_ref` draws and adds π_ref's).

    Args:
        family, n_contexts, feature_dim, seed: the answer-level game, :func:`~prefzoo.envs.game.make_game`'s.
        vocab_size: V, the tokens 0..V−1. max_length: L, the tokens of every response.
        n_states: S, states of π_ref's automaton. n_answers: K ≤ L+1 (so that every answer is
            reachable: w[0] = 0 and w[1] = 1). ref_scale: spread of π_ref's next-token logits.
        max_queries: the run's budget (:class:`~prefzoo.envs.oracle.PreferenceOracle`).
    """

    responses, payoff, exact, listed = "tokens", "preference", True, False
    headline = metrics.EXPLOITABILITY

    def __init__(self, family: str = "bt", n_contexts: int = 8, vocab_size: int = 16, max_length: int = 16,
                 n_states: int = 8, n_answers: int = 8, feature_dim: int = 4, ref_scale: float = 1.0,
                 seed: int | None = 0, max_queries: int | None = None):
        V, L = check_int("vocab_size", vocab_size, low=2, high=255), check_int("max_length", max_length, low=1)
        S, K = check_int("n_states", n_states, low=1), check_int("n_answers", n_answers, low=2)
        if K > L + 1:
            raise ValueError(f"n_answers must be at most max_length + 1 = {L + 1} (every answer reachable), got {K}")
        X = check_int("n_contexts", n_contexts, low=1)
        check_memory(f"an answer-token game with n_contexts={X}, max_length={L}, n_states={S}, n_answers={K}, "
                     f"vocab_size={V}", 3 * 8.0 * X * L * S * K * V, "a policy table has X·L·S·K·V entries")
        ref_scale = check_real("ref_scale", ref_scale, 0)
        answers = make_game(family, n_contexts=X, n_actions=K, feature_dim=feature_dim, seed=seed)
        super().__init__(X, answers.rho, answers.features, None, seed, max_queries)
        rng = np.random.default_rng([0 if seed is None else seed, 20])
        self.vocab_size, self.max_length, self.n_states, self.n_answers = V, L, S, K
        self.family, self.Q = family, answers.P
        self.delta = rng.integers(S, size=(S, V))  # δ(s, v)
        self.weights = np.r_[0, 1, rng.integers(K, size=V - 2)]  # w[v]; a = Σ w[y_t] mod K
        self.log_q = np.log(softmax(ref_scale * rng.normal(size=(X, S, V)), axis=-1))  # log q(v | s, x)
        target = self.delta[:, None, :] * K + (np.arange(K)[:, None] + self.weights) % K  # [S, K, V]
        self.transitions = sparse.csr_matrix((np.ones(S * K * V), (np.arange(S * K * V), target.ravel())),
                                             shape=(S * K * V, S * K))  # (s, c, v) -> (s', c')
        self.reference = FiniteStatePolicy(self, np.broadcast_to(self.log_q[:, None, :, None, :], (X, L, S, K, V)))
        self.answer_game = PreferenceGame(self.Q, self.reference.answer_marginal(), answers.rho, answers.features,
                                          answers.rewards, family=family, seed=seed)
        self._tokens, self._answers, self._rows = np.empty((0, L), np.uint8), np.empty(0, np.int64), 0
        self._nash: dict[float, FiniteStatePolicy] = {}

    # ------------------------------------------------------------------ the automaton
    def advance(self, states: np.ndarray, partials: np.ndarray, tokens: np.ndarray):
        """(s', c') after one token each: s' = δ(s, v), c' = (c + w[v]) mod K."""
        return self.delta[states, tokens], (partials + self.weights[tokens]) % self.n_answers

    def walk(self, tokens: np.ndarray):
        """States and partial answers before each token, [n, L] each, and the answers [n]."""
        n, L = tokens.shape
        states, partials = np.zeros((n, L), np.int64), np.zeros((n, L), np.int64)
        s, c = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for t in range(L):
            states[:, t], partials[:, t] = s, c
            s, c = self.advance(s, c, tokens[:, t])
        return states, partials, c

    def check_tokens(self, tokens: Any) -> np.ndarray:
        tokens = np.asarray(tokens)
        if (tokens.ndim != 2 or tokens.shape[1] != self.max_length or not np.issubdtype(tokens.dtype, np.integer)
                or (tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size))):
            raise ValueError(f"tokens must be integer rows [n, {self.max_length}] of ids in [0, {self.vocab_size}), "
                             f"got an array of shape {tokens.shape} and dtype {tokens.dtype}")
        return tokens

    def answers(self, x: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """a(y) of token rows [n, L] (the contexts ``x`` [n] do not change it), [n]."""
        return self.walk(self.check_tokens(tokens))[2]

    # ------------------------------------------------------------------ the counted oracle
    def add_rows(self, tokens: np.ndarray) -> np.ndarray:
        """Handles [n] of token rows [n, L] (the responses :meth:`compare` and :meth:`prob` take).
        The store keeps every row of the game's life (L + 8 bytes each), in buffers that double."""
        tokens = self.check_tokens(tokens)
        start, end = self._rows, self._rows + len(tokens)
        if end > len(self._answers):
            size = max(end, 2 * len(self._answers), 1024)
            self._tokens = np.concatenate([self._tokens[:start], np.empty((size - start, self.max_length), np.uint8)])
            self._answers = np.concatenate([self._answers[:start], np.empty(size - start, np.int64)])
        self._tokens[start:end], self._answers[start:end] = tokens, self.walk(tokens)[2]
        self._rows = end
        return np.arange(start, end)

    def rows(self, handles: np.ndarray) -> np.ndarray:
        """The token rows [n, L] of handles [n]."""
        return self._tokens[self._check_handles(handles)].astype(np.int64)

    def _check_handles(self, handles):
        handles = np.asarray(handles)
        if handles.size and (not np.issubdtype(handles.dtype, np.integer) or handles.min() < 0
                             or handles.max() >= self._rows):
            raise ValueError(f"responses must be handles in [0, {self._rows}) from add_rows or sample_ref, "
                             f"got {handles!r}")
        return handles

    def handle_answers(self, handles: np.ndarray) -> np.ndarray:
        """The answers of handles (stored when their rows were added)."""
        return self._answers[self._check_handles(handles)]

    def preference(self, x, y, y2) -> np.ndarray:
        return self.Q[x, self.handle_answers(y), self.handle_answers(y2)]

    def sample_ref(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.add_rows(self.reference.sample(contexts, rng))

    # ------------------------------------------------------------------ exact services
    def tilted(self, terminal_log_weight: np.ndarray) -> FiniteStatePolicy:
        """π(y|x) ∝ π_ref(y|x)·exp(f(x, a(y))) for ``terminal_log_weight`` f [X, K], by the backward
        program log h_t(s, c) = logsumexp_v log q(v|s) + log h_{t+1}(δ(s, v), c + w_v); the next-token
        law is q(v|s)·h_{t+1}(s', c')/h_t(s, c). Where h_t(s, c) = 0 (f = −∞ on every answer reachable
        from there; never on a path π_ref takes to a weighted answer) the law is uniform."""
        X, L, S, K, V = self.n_contexts, self.max_length, self.n_states, self.n_answers, self.vocab_size
        nxt = (np.arange(K)[:, None] + self.weights) % K  # c' = c + w_v mod K, [K, V]
        log_h = np.broadcast_to(terminal_log_weight[:, None, :], (X, S, K))
        log_probs = np.empty((X, L, S, K, V))
        for t in reversed(range(L)):
            joint = self.log_q[:, :, None, :] + log_h[:, self.delta[:, None, :], nxt[None, :, :]]  # [X, S, K, V]
            with np.errstate(invalid="ignore"):
                log_h = logsumexp(joint, axis=-1)
                dead = ~np.isfinite(log_h)[..., None]
                log_probs[:, t] = np.where(dead, -np.log(V), joint - log_h[..., None])
        return FiniteStatePolicy(self, log_probs)

    def nash(self, beta: float = 0.0) -> FiniteStatePolicy:
        """The equilibrium as a finite-state policy (cached per β). β > 0: the unique π*_β, π_ref tilted
        by g/β, g = Q ν*_β (ν* = ``answer_game.nash(beta)``). β = 0: π_ref tilted by ν*_0/μ, whose
        answer marginal is a von Neumann winner of the answer game (any such policy is an equilibrium)."""
        beta = check_real("beta", beta, 0)
        if beta not in self._nash:
            nu = self.answer_game.nash(beta)
            with np.errstate(divide="ignore"):
                weight = self.answer_game.win_rates(nu) / beta if beta > 0 else np.log(nu / self.answer_game.ref)
            self._nash[beta] = self.tilted(weight)
        return self._nash[beta]

    def check_exact(self, policy: Any, name: str = "policy", kinds: tuple[type, ...] = (FiniteStatePolicy,
                                                                                        CandidatePolicy)):
        """``policy`` if it is one of ``kinds`` of this game's exact policies, else a TypeError naming it."""
        if not isinstance(policy, kinds) or policy.game is not self:
            raise TypeError(f"{name} must be a {' or '.join(k.__name__ for k in kinds)} of this game "
                            f"(game.reference, game.nash(beta), game.tilted(...)), got {type(policy).__name__}; "
                            "a neural policy is estimated from its samples as a SampledPolicy (its game_view())")
        return policy

    def kl(self, policy: FiniteStatePolicy | CandidatePolicy, other: FiniteStatePolicy) -> float:
        """ρ-weighted KL(policy ‖ other) over whole sequences (exact)."""
        return self.expectation(self.check_exact(policy).kl(self.check_exact(other, "other", (FiniteStatePolicy,))))

    def answer_kl(self, policy: FiniteStatePolicy | CandidatePolicy,
                  other: FiniteStatePolicy | CandidatePolicy) -> float:
        """ρ-weighted KL(ν_policy ‖ ν_other) between answer marginals (exact; the metric every exact
        policy of this game has, candidates included)."""
        nu, nu_other = self.check_exact(policy).answer_marginal(), self.check_exact(other, "other").answer_marginal()
        with np.errstate(divide="ignore"):
            return self.expectation(kl_divergence(np.log(nu), np.log(nu_other)))

    def exploitability(self, policy: Any, beta: float = 0.0, rng: np.random.Generator | None = None) -> float:
        """The sequence game's exploitability: with win(a) = (Q ν_π)(a), β = 0: E_x[max_a win(a) − ½];
        β > 0: E_x[β log Σ_a μ(a) exp(win(a)/β) + β KL(π‖π_ref) − ½]. Exact for a
        :class:`FiniteStatePolicy` or :class:`CandidatePolicy`; for a neural policy (a
        :class:`SampledPolicy`, or a trained policy whose ``game_view()`` is one) an :class:`Estimate`
        with its standard error (:meth:`estimate_exploitability`, drawing from ``rng``, default seed 0)."""
        beta = check_real("beta", beta, 0)
        view = policy.game_view() if hasattr(policy, "game_view") else policy
        if isinstance(view, SampledPolicy) and view.game is self:
            return self.estimate_exploitability(view, beta, np.random.default_rng(0) if rng is None else rng)
        policy = self.check_exact(view)
        return float(self._exploitability(policy.answer_marginal(), policy.kl(self.reference) if beta else 0.0, beta))

    def _exploitability(self, nu: np.ndarray, kl_to_ref: np.ndarray, beta: float) -> np.ndarray:
        """E_x[gap] from answer marginals ν [..., X, K] and KL(π‖π_ref) per context [..., X] (unused at β = 0)."""
        win = np.einsum("xab,...xb->...xa", self.Q, nu)
        if beta == 0:
            gap = win.max(axis=-1) - 0.5
        else:
            gap = soft_best_response_value(win, self.answer_game.ref, beta) + beta * kl_to_ref - 0.5
        return np.maximum(gap, 0.0) @ self.rho

    def estimate_exploitability(self, policy: SampledPolicy, beta: float, rng: np.random.Generator,
                                per_context: int = 512, resamples: int = 200) -> Estimate:
        """The exploitability of a policy known by its samples: ``per_context`` rows per prompt give
        each prompt's answer histogram ν̂ and (β > 0) the Monte Carlo KL(π‖π_ref), and the exact
        formula of :meth:`exploitability` is applied to them (a plug-in: ν̂ and the KL are unbiased,
        the max / log-sum-exp of them is biased by O(1/``per_context``)). Its standard error is the
        s.d. over ``resamples`` bootstrap resamples of the rows within each prompt."""
        X, m = self.n_contexts, per_context
        x = np.repeat(np.arange(X), m)
        rows = policy.sample(x, rng)
        answers = self.answers(x, rows).reshape(X, m)
        log_ratio = (policy.log_prob(x, rows) - self.reference.log_prob(x, rows)).reshape(X, m)
        draws = np.concatenate([np.broadcast_to(np.arange(m), (1, X, m)), rng.integers(m, size=(resamples, X, m))])
        prompt = np.arange(X)[None, :, None]
        nu = (answers[prompt, draws][..., None] == np.arange(self.n_answers)).mean(axis=-2)  # [1+B, X, K]
        values = self._exploitability(nu, log_ratio[prompt, draws].mean(axis=-1), beta)
        return Estimate(values[0], values[1:].std(ddof=1))

    def kl_estimate(self, policy, other, rng: np.random.Generator) -> tuple[float, float]:
        """KL(policy ‖ other) over whole sequences by Monte Carlo, and its standard error: the mean
        of log policy(y|x) − log other(y|x) over y ~ policy on :meth:`evaluation_contexts` (x ~ ρ,
        one row each: iid terms, s.e. = sd/√n). Unbiased; both need ``sample`` and ``log_prob``
        of token rows (:class:`FiniteStatePolicy`, :class:`SampledPolicy`)."""
        x = self.evaluation_contexts(rng)
        rows = policy.sample(x, rng)
        return iid_mean_se(policy.log_prob(x, rows) - other.log_prob(x, rows))

    def evaluate(self, policy: Any, rng: np.random.Generator) -> dict[str, float]:
        """Exact metrics of a :class:`FiniteStatePolicy` or :class:`CandidatePolicy` (exploitability,
        KL(π‖π_ref), win rate vs π_ref). A :class:`SampledPolicy`: estimates with their standard
        errors from its samples — unbiased on :meth:`evaluation_contexts`: KL(π‖π_ref)
        (:meth:`kl_estimate`) and the win rate vs π_ref, the mean of (Q μ)(x, a(y)) (the exact win
        rate of each sampled answer); and the plug-in exploitability (:meth:`estimate_exploitability`).
        Any other sampler: the base's estimated win rate."""
        if isinstance(policy, SampledPolicy):
            exploitability = self.estimate_exploitability(policy, 0.0, rng)
            kl, kl_se = self.kl_estimate(policy, self.reference, rng)
            x = self.evaluation_contexts(rng)
            win, win_se = iid_mean_se(self.answer_game.win_rates(self.answer_game.ref)[
                x, self.answers(x, policy.sample(x, rng))])
            return {metrics.EST_WIN_RATE_VS_REF: win, metrics.EST_WIN_RATE_VS_REF_SE: win_se,
                    metrics.EST_KL_TO_REF: kl, metrics.EST_KL_TO_REF_SE: kl_se,
                    metrics.EST_EXPLOITABILITY: float(exploitability), metrics.EST_EXPLOITABILITY_SE: exploitability.se}
        if not isinstance(policy, (FiniteStatePolicy, CandidatePolicy)):
            return super().evaluate(policy, rng)
        nu = policy.answer_marginal()
        return {metrics.EXPLOITABILITY: self.exploitability(policy),
                metrics.KL_TO_REF: self.kl(policy, self.reference),
                metrics.WIN_RATE_VS_REF: self.expectation(np.einsum("xa,xa->x", nu, self.answer_game.win_rates(
                    self.answer_game.ref)))}


class AnswerTokenGameEnv(TokenEpisodeEnv):
    """Write exactly L tokens; the answer of the row duels the answer of a π_ref row.

    ## Description
    x ~ ρ; the agent writes L tokens (``Discrete(V)`` actions, no EOS); the game's answer
    a(y) = Σ w[y_t] mod K of the row meets the answer of a row drawn from π_ref (exact samples of
    the finite-state reference), and Q(a ≻ a' | x) decides. ``env.unwrapped.game`` is an
    :class:`AnswerTokenGame`: exact ``nash(beta)``, ``exploitability``, ``kl`` and answer
    marginals at any size (V^L sequences per prompt, 1.8·10¹⁹ by default), by dynamic programming.

    ## Observation Space
    ``Dict(prompt = Box(-B, B, (d,), float32), tokens = MultiDiscrete([V+1]*L), length = Discrete(L+1))``
    (the token episode of :class:`~prefzoo.envs.token_episode.TokenEpisodeEnv`).

    ## Rewards (``reward_mode``)
    ``comparison`` (default): Bernoulli(Q(a ≻ a' | x)), one counted query; ``win_prob``: Q(a ≻ a' | x).

    ## Arguments
    ``family`` (``bt``, ``cyclic``, ``mixed``, ``reward_order``: the answer-level preference),
    :class:`AnswerTokenGame` keywords (``n_contexts``, ``vocab_size``, ``max_length``, ``n_states``,
    ``n_answers``, ``seed``, ``max_queries``, …), or ``game``; ``reward_mode``; ``render_mode="ansi"``.

    ## info
    ``context`` always; ``answer``, ``opponent_answer`` and ``win_prob`` at the last step (−1, −1
    and −1.0 before it, :data:`~prefzoo.envs.token_episode.UNDECIDED`).

    ## Version History
    * v0: initial version.
    """

    outcome_info = {"answer": int, "opponent_answer": int, "win_prob": float}

    def __init__(self, family: str = "bt", game: AnswerTokenGame | None = None, reward_mode: str = "comparison",
                 render_mode: str | None = None, **game_kwargs: Any):
        check_choice("reward_mode", reward_mode, ("comparison", "win_prob"))
        game = env_game(AnswerTokenGame, game, family, **game_kwargs)
        prompts = game.features.astype(np.float32)
        bound = float(np.ceil(np.abs(prompts).max()))
        episode = TokenEpisode(game.vocab_size, game.max_length, None, prompts,
                               spaces.Box(-bound, bound, shape=prompts.shape[1:], dtype=np.float32))
        super().__init__(game, episode, render_mode)
        self.reward_mode = reward_mode

    def finish(self, context: int, tokens: np.ndarray, length: int) -> Ending:
        x = np.array([context])
        y, opponent = self.game.add_rows(tokens[None]), self.game.sample_ref(x, self.np_random)
        win_prob = float(self.game.preference(x, y, opponent)[0])
        if self.reward_mode == "comparison":
            reward = float(self.game.compare(x, y, opponent, self.np_random)[0])
        else:
            reward = float(self.game.prob(x, y, opponent)[0])
        answer, opponent_answer = (int(a) for a in self.game.handle_answers(np.r_[y, opponent]))
        return Ending(reward, {"answer": answer, "opponent_answer": opponent_answer, "win_prob": win_prob},
                      f"{tokens.tolist()} answer {answer} vs {opponent_answer}")
