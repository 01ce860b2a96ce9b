"""Answer-level (ALFT) games: a token trace, then a deterministic answer, scored by a concave
utility of the answer marginal (design §5; Mohri, Schneider, Zhong, arXiv:2605.02435).

A trace y is one of the enumerated token sequences of a :class:`~prefzoo.envs.token.TokenGame`
(same π_ref GRU, same short-lex enumeration); its answer z = extract(y) ∈ {0..A−1} is a
deterministic many-to-one map (:func:`extract_answers`: ``sum_mod`` = (sum of content tokens)
mod A, or ``last`` = the last content token, 0 for the empty trace). The utility depends only on
the answer marginal

    ν_π(z|x) = Σ_{y: extract(y) = z} π(y|x)      (``answer_marginal``: π [X, S] @ M [S, A])

**Utilities** F(ν) per prompt (concave; their tangent reward r(z) = ∂F/∂ν(z) up to constants and
a positive factor, which is what a policy gradient needs — Fenchel: for fixed ν the policy faces
the ordinary answer-level reward r):

==============  ===========================  ======================  ==========================
``utility``     F(ν)                         reward r(z) at ν        argmax ν*
==============  ===========================  ======================  ==========================
``kl``          −KL(ν‖ρ_target)              log ρ(z) − log ν(z)     ν* = ρ_target, F* = 0
``entropy``     H(ν) = −Σ ν log ν            −log ν(z)               uniform on reachable answers
``gini``        1 − Σ ν²                     1 − ν(z)  (½ tangent)   uniform on reachable answers
``coherence``   Σ ν² (two rollouts agree)    ν(z)      (½ tangent)   any reachable vertex; ν* =
                                                                     the one-hot on π_ref's mode
==============  ===========================  ======================  ==========================

For ``kl``, E_ν[r] = F(ν) and Σ_z ∇ν(z)·r(z) = ∇F (the −1 of ∂F/∂ν cancels on the simplex), so
the policy gradient with the reward evaluated at the *current* ν is the exact gradient of F.

**Group estimation.** ν is unknown to a learner: from K rollouts of one prompt, a rollout whose
answer appears k times among the K (itself included) gets its log ν(z) term from the estimator
table g[k] = ``table(estimator, K)[k-1]`` (:mod:`prefzoo.envs.estimators`) and its polynomial
terms (ν(z), for ``gini``/``coherence``) from the unbiased U-statistic (k−1)/(K−1)
(:func:`group_rewards`). The bias of the log term shifts the equilibrium of the estimated game
(:func:`expected_group_reward` is its exact mean reward per answer).

**Metrics** (exact, by enumeration): ``alft/objective`` = E_x F(ν_π(·|x)) and
``alft/kl_answer_to_target`` = E_x KL(ν*(·|x) ‖ ν_π(·|x)) with ν* the exact argmax above — for
``kl`` that is KL(ρ_target‖ν_π), the *forward* KL, while the objective is −KL(ν_π‖ρ_target).
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np
from scipy.special import rel_entr

from . import metrics
from .checks import check_choice, check_int, check_real, closest_hint
from .estimators import LOG_ESTIMATORS, table
from .game import env_game
from .oracle import PreferenceOracle, TablePolicy
from .sequences import count_sequences
from .token import MAX_EXACT_SEQUENCES, TokenGame, check_token_sizes, make_token_game
from .token_episode import Ending, TokenEpisodeEnv, sequence_episode

UTILITIES = ("kl", "entropy", "gini", "coherence")
EXTRACTORS = ("sum_mod", "last")
TARGETS = ("skewed", "uniform")
REWARD_MODES = ("group", "exact")
_FLOOR = 1e-300  # log ν at an unreachable answer is −inf; clamp before logs of marginals


# ---------------------------------------------------------------- pure helpers
def extract_answers(tokens: np.ndarray, vocab_size: int, n_answers: int, rule: str = "sum_mod") -> np.ndarray:
    """Answer of each token row [n, L] (content ids 1..V−1, then EOS/padding): ``sum_mod`` =
    (sum of content tokens) mod A; ``last`` = last content token (0 for the empty trace), A = V."""
    check_choice("extract rule", rule, EXTRACTORS)
    tokens = np.asarray(tokens, dtype=np.int64)
    alive = np.cumprod((tokens >= 1) & (tokens < vocab_size), axis=1).astype(bool)
    if rule == "sum_mod":
        return (np.where(alive, tokens, 0).sum(1) % n_answers).astype(np.int64)
    length = alive.sum(1)
    last = tokens[np.arange(len(tokens)), np.maximum(length - 1, 0)]
    return np.where(length > 0, last, 0).astype(np.int64)


def answer_matrix(answers: np.ndarray, n_answers: int) -> np.ndarray:
    """The 0/1 extraction matrix M [S, A], M[y, z] = 1{extract(y) = z}."""
    return np.eye(n_answers)[np.asarray(answers)]


def utility_value(nu: np.ndarray, target: np.ndarray, utility: str) -> np.ndarray:
    """F(ν) per prompt [X] for marginals ``nu`` [X, A] (targets ``target`` [X, A] for ``kl``)."""
    _check_utility(utility)
    if utility == "kl":
        return -rel_entr(nu, target).sum(-1)
    if utility == "entropy":
        return -rel_entr(nu, 1.0).sum(-1)
    squares = (nu**2).sum(-1)
    return 1.0 - squares if utility == "gini" else squares


def utility_reward(nu: np.ndarray, target: np.ndarray, utility: str) -> np.ndarray:
    """The exact answer-level reward r(z) at ν, [X, A] (−inf/NaN-free: log ν clamped at 1e-300)."""
    _check_utility(utility)
    log_nu = np.log(np.maximum(nu, _FLOOR))
    if utility == "kl":
        return np.log(np.maximum(target, _FLOOR)) - log_nu
    if utility == "entropy":
        return -log_nu
    return 1.0 - nu if utility == "gini" else nu.copy()


def optimum(target: np.ndarray, reachable: np.ndarray, utility: str, ref_marginal: np.ndarray) -> np.ndarray:
    """The exact argmax ν* [X, A] of F over marginals supported on the ``reachable`` answers
    [X, A] (closed forms of the module table; for ``coherence`` the vertex at π_ref's mode)."""
    _check_utility(utility)
    A = target.shape[-1]
    if utility == "kl":
        return target.copy()
    if utility in ("entropy", "gini"):
        return reachable / reachable.sum(-1, keepdims=True)
    return np.eye(A)[np.argmax(np.where(reachable, ref_marginal, -1.0), axis=-1)]


def group_counts(answers: np.ndarray) -> np.ndarray:
    """k [n, K]: how many rollouts of each row share each rollout's answer (itself included)."""
    answers = np.asarray(answers)
    return (answers[:, :, None] == answers[:, None, :]).sum(-1)


def estimator_tables(utility: str, estimator: str, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(g_log [K], g_poly [K]): the table for the log ν term (``estimator``) and the unbiased
    U-statistic (k−1)/(K−1) for the ν term."""
    _check_utility(utility)
    check_choice("estimator", estimator, LOG_ESTIMATORS)
    needs_log = utility in ("kl", "entropy")
    return (table(estimator, K) if needs_log else np.zeros(K)), table("ustat", K, m=1)


def group_rewards(answers: np.ndarray, log_target: np.ndarray, utility: str, g_log: np.ndarray,
                  g_poly: np.ndarray) -> np.ndarray:
    """Per-rollout estimated rewards [n, K] of ``answers`` [n, K] (K rollouts of one prompt per
    row): log ν(z_i) ≈ g_log[k_i−1] and ν(z_i) ≈ g_poly[k_i−1] (k_i from :func:`group_counts`);
    ``log_target`` [n, A] holds log ρ(·|x) of each row's prompt (used by ``kl`` only)."""
    k = group_counts(answers) - 1
    if utility == "kl":
        return np.take_along_axis(log_target, answers, axis=1) - g_log[k]
    if utility == "entropy":
        return -g_log[k]
    return 1.0 - g_poly[k] if utility == "gini" else g_poly[k]


def bernstein_mean(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """E_p g[c+1], c ~ Bin(K−1, p), at any ``p`` in [0, 1] (0 allowed: the mean is g[1])."""
    K = len(g)
    c = np.arange(K)
    coef = np.array([comb(K - 1, int(i)) for i in c], dtype=float)
    p = np.asarray(p, dtype=float)[..., None]
    return (coef * p**c * (1 - p) ** (K - 1 - c)) @ g


def expected_group_reward(nu: np.ndarray, target: np.ndarray, utility: str, g_log: np.ndarray,
                          g_poly: np.ndarray) -> np.ndarray:
    """E[estimated reward | answer z] [X, A] when the other K−1 rollouts are drawn from ν: the
    estimated game's reward (its stationary points are where it is constant on supp ν)."""
    if utility == "kl":
        return np.log(np.maximum(target, _FLOOR)) - bernstein_mean(g_log, nu)
    if utility == "entropy":
        return -bernstein_mean(g_log, nu)
    mean = bernstein_mean(g_poly, nu)
    return 1.0 - mean if utility == "gini" else mean


def mean_field_dynamics(nu: np.ndarray, target: np.ndarray, utility: str, g_log: np.ndarray, g_poly: np.ndarray,
                        eta: float = 0.1, steps: int = 200) -> np.ndarray:
    """Exact answer-level dynamics of the estimated game: ``steps`` mirror-ascent steps
    ν ← ν·exp(η·r̄(ν))/Z with r̄ = :func:`expected_group_reward` (an answer-level tabular
    policy fed the estimator's mean reward; no sampling noise). Returns ν [X, A]. With an
    unbiased reward its fixed point is argmax F; a biased table moves it."""
    nu = np.array(nu, dtype=float)
    for _ in range(int(steps)):
        r = expected_group_reward(nu, target, utility, g_log, g_poly)
        logits = np.log(np.maximum(nu, _FLOOR)) + eta * r
        nu = np.exp(logits - logits.max(-1, keepdims=True))
        nu /= nu.sum(-1, keepdims=True)
    return nu


def _check_utility(utility: str) -> None:
    check_choice("utility", utility, UTILITIES)


def make_target(kind, n_contexts: int, n_answers: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Target answer law ρ_target [X, A]: ``skewed`` = a random permutation per prompt of the
    geometric profile decay^j (rare answers: min ρ = decay^{A−1}(1−decay)/(1−decay^A)),
    ``uniform``, or an explicit array [A] or [X, A] (rows renormalized; must be positive)."""
    if isinstance(kind, str):
        if kind not in TARGETS:
            raise ValueError(f"unknown target {kind!r}{closest_hint(kind, TARGETS)}; expected one of {TARGETS} "
                             "or an array [A] / [X, A]")
        if kind == "uniform":
            return np.full((n_contexts, n_answers), 1.0 / n_answers)
        decay = check_real("target_decay", decay, 0, 1, low_open=True)
        profile = decay ** np.arange(n_answers)
        out = np.stack([profile[rng.permutation(n_answers)] for _ in range(n_contexts)])
    else:
        out = np.broadcast_to(np.asarray(kind, dtype=float), (n_contexts, n_answers)).copy()
    if not np.all(out > 0):
        raise ValueError("the target answer law must be positive on every answer (the KL game's equilibrium is ρ)")
    return out / out.sum(-1, keepdims=True)


# ---------------------------------------------------------------- the game
class AnswerGame(PreferenceOracle):
    """An answer-level game over the traces of a :class:`TokenGame` it holds (``token_game``):
    the same prompts, π_ref, ``sequences`` and ``ref_lm`` (so sequence policies apply unchanged),
    plus an answer map and exact answer-level services (``answer_marginal``, ``objective``,
    ``kl_answer_to_target``, ``optimum``). Its responses are token sequences (listed), its payoff
    the utility F of the answer marginal (``payoff = "answer_utility"``), and it is exact: the
    equilibrium ν* = argmax F and the metrics are computed by enumeration. It has no preference
    services (``nash``, ``exploitability`` of a P); its pairwise oracle is the token game's trace
    preference, which ALFT does not use.

    Extra attributes: ``n_answers`` A, ``extract`` (rule), ``answers`` [S], ``M`` [S, A] (the
    0/1 extraction matrix), ``target`` [X, A] (ρ_target of the ``kl`` utility), ``reachable``
    [X, A] (answers of positive π_ref mass).
    """

    responses = "tokens"
    payoff = "answer_utility"
    exact = True
    listed = True
    headline = metrics.ALFT_KL_TO_TARGET
    why_not_exact = "its payoff is a utility F of the answer marginal, not a preference P (see objective)"

    def __init__(self, token_game: TokenGame, *, n_answers: int, extract: str, target: np.ndarray,
                 seed: int | None = None):
        g = self.token_game = token_game
        super().__init__(g.n_contexts, g.rho, g.features, g.ref, seed)
        self.sequences, self.ref_lm = g.sequences, g.ref_lm
        self.n_answers, self.extract = int(n_answers), extract
        self.answers = extract_answers(self.sequences.tokens, self.sequences.vocab_size, self.n_answers, extract)
        self.M = answer_matrix(self.answers, self.n_answers)
        self.target = target
        self.reachable = self.answer_marginal(self.ref) > 0

    def preference(self, x, y, y2) -> np.ndarray:
        return self.token_game.preference(x, y, y2)

    def evaluate(self, policy: TablePolicy, rng: np.random.Generator | None = None) -> dict[str, float]:
        """The sequence-level KL(π‖π_ref), exact (the answer-level metrics depend on the utility F a
        learner maximizes: :meth:`objective`, :meth:`kl_answer_to_target`)."""
        return {metrics.KL_TO_REF: self.expectation(self.kl(policy.table, self.ref))}

    def answer_marginal(self, pi) -> np.ndarray:
        """ν_π [X, A] = π [X, S] @ M [S, A]."""
        return np.asarray(pi, dtype=np.float64) @ self.M

    def optimum(self, utility: str) -> np.ndarray:
        """ν* = argmax F [X, A] (see the module table)."""
        return optimum(self.target, self.reachable, utility, self.answer_marginal(self.ref))

    def objective(self, pi, utility: str) -> float:
        """``alft/objective``: E_x F(ν_π(·|x)), exact."""
        return self.expectation(utility_value(self.answer_marginal(self.check_policy(pi)), self.target, utility))

    def kl_answer_to_target(self, pi, utility: str) -> float:
        """``alft/kl_answer_to_target``: E_x KL(ν* ‖ ν_π) (for ``kl``: KL(ρ_target ‖ ν_π))."""
        nu = self.answer_marginal(self.check_policy(pi))
        return self.expectation(rel_entr(self.optimum(utility), nu).sum(-1))

    def answer_rewards(self, nu: np.ndarray, utility: str, contexts: np.ndarray | None = None) -> np.ndarray:
        """Exact reward r(z) [n, A] at the marginals ``nu`` [n, A] of ``contexts`` (default: all X)."""
        target = self.target if contexts is None else self.target[np.asarray(contexts)]
        return utility_reward(nu, target, utility)


def make_answer_game(n_contexts: int = 8, vocab_size: int = 5, max_length: int = 4, feature_dim: int = 4,
                     seed: int | None = 0, n_answers: int = 6, extract: str = "sum_mod", target="skewed",
                     target_decay: float = 0.7, hidden: int = 32, ref_fit_steps: int = 60) -> AnswerGame:
    """Build a seeded :class:`AnswerGame` on :func:`make_token_game`'s traces (Bradley–Terry
    family; its P is unused). Defaults: S = 341 traces per prompt, A = 6 answers by sum mod 6,
    a skewed target with min ρ ≈ 0.057.

    Raises:
        ValueError: an unknown extract rule or target, n_answers < 2, more traces than can be
            enumerated, or a bad size (from :func:`make_token_game`).
    """
    check_choice("extract rule", extract, EXTRACTORS)
    n_answers = check_int("n_answers", vocab_size if extract == "last" else n_answers, low=2)
    check_token_sizes(check_int("n_contexts", n_contexts, low=1), check_int("vocab_size", vocab_size, low=2),
                      check_int("max_length", max_length, low=1))
    n_traces = count_sequences(vocab_size, max_length)
    if n_traces > MAX_EXACT_SEQUENCES:
        raise ValueError(f"vocab_size={vocab_size}, max_length={max_length} gives {n_traces:,} traces per prompt; the "
                         f"answer game enumerates its traces (at most {MAX_EXACT_SEQUENCES:,}): lower vocab_size or "
                         "max_length")
    game = make_token_game("bt", n_contexts=n_contexts, vocab_size=vocab_size, max_length=max_length,
                           feature_dim=feature_dim, seed=seed, hidden=hidden, ref_fit_steps=ref_fit_steps)
    rng = np.random.default_rng([0 if seed is None else seed, 6])  # the target's own stream
    return AnswerGame(game, n_answers=int(n_answers), extract=extract,
                      target=make_target(target, int(n_contexts), int(n_answers), float(target_decay), rng), seed=seed)


# ---------------------------------------------------------------- the environment
class AnswerGameEnv(TokenEpisodeEnv):
    """Answer-level fine-tuning game: write a trace token by token; its answer is scored.

    ## Description
    A prompt x ~ ρ is drawn; the agent writes a trace y (V token ids, 0 = EOS, at most L tokens:
    :class:`~prefzoo.envs.token_episode.TokenEpisodeEnv`'s episode, as in ``TokenGame-v0``); its
    answer z = extract(y) (``sum_mod``: sum of the tokens mod A; many traces per answer) is scored
    by the answer-level reward of a concave utility F of the answer marginal ν (``utility``: ``kl``
    to a target ρ_target, ``entropy``, ``gini``, ``coherence``; see :mod:`prefzoo.envs.answer`).
    ``env.unwrapped.game`` is an :class:`AnswerGame`, not a preference game (its payoff is F(ν), not
    a P: no ``nash``, no ``exploitability``); its answer-level services are exact, by enumeration
    of the traces: ν_π, F (``objective``), its argmax (``optimum``), ``kl_answer_to_target``.

    An env cannot know the learner's policy, so ν is that of a settable **opponent** (π_ref by
    default; ``set_opponent(algo.policy_probs())`` makes the env's reward the learner's ALFT reward).

    ## Action Space
    ``Discrete(V)``: the next token (0 = EOS).

    ## Observation Space
    ``Dict``, as TokenGame's: ``prompt`` ``Box(-B, B, (feature_dim,), float32)``, ``tokens``
    ``MultiDiscrete([V+1]*L)`` (padded with V), ``length`` ``Discrete(L+1)``.

    ## Rewards (``reward_mode``, at the last step; 0 before)
    | mode | reward |
    |---|---|
    | ``group`` (default) | K−1 = ``group_size``−1 opponent traces are drawn; the answer seen k times among the K (the agent's included) is rewarded with the estimator table (``estimator``) for log ν and the U-statistic (k−1)/(K−1) for ν |
    | ``exact`` | r(z) at ν_opponent, computed exactly (e.g. log ρ_target(z) − log ν_opp(z)) |

    ## Starting State
    x ~ ρ from ``self.np_random``; no tokens.

    ## Episode End
    ``terminated=True`` on EOS or the L-th token; ``truncated`` is always False.

    ## Arguments
    | kwarg | default | meaning |
    |---|---|---|
    | ``utility`` | ``"kl"`` | ``kl``, ``entropy``, ``gini``, ``coherence`` |
    | ``reward_mode`` | ``"group"`` | see Rewards |
    | ``estimator`` | ``"aqp"`` | log ν table: plugin, loo_plugin, digamma, minimax, aqp |
    | ``group_size`` | 8 | K of the group reward |
    | ``opponent`` | π_ref | sequence distribution [X, S] whose ν the reward uses |
    | ``game`` | None | a prebuilt :class:`AnswerGame` instead of the kwargs below |
    | :func:`make_answer_game` kwargs | | ``n_contexts`` 8, ``vocab_size`` 5, ``max_length`` 4, ``n_answers`` 6, ``extract``, ``target``, ``target_decay`` 0.7, ``seed`` 0, … |
    | ``render_mode`` | None | ``"ansi"`` |

    ## info
    ``context`` always; at the last step ``sequence`` (trace index), ``answer``, ``count`` (k,
    ``group`` mode; 0 in ``exact``) and ``exact_reward`` (r(z) at ν_opponent); before it −1, −1, −1
    and −1.0 (``UNDECIDED``, see :mod:`prefzoo.envs.token_episode`; r(z) may be −1: read ``terminated``).

    ## Vectorized
    No vector entry point: use ``gym.make_vec(..., vectorization_mode="sync")``. ``aqp_alft``
    samples whole groups from a batched policy on the same game instead of stepping the env.

    ## Version History
    * v0: initial version.

    >>> import gymnasium as gym, prefzoo
    >>> env = gym.make("prefzoo/AnswerGame-v0")
    >>> obs, info = env.reset(seed=0)
    >>> game = env.unwrapped.game
    >>> game.M.shape, round(float(game.answer_marginal(game.ref).sum(1).max()), 12)
    ((341, 6), 1.0)
    """

    outcome_info = {"sequence": int, "answer": int, "count": int, "exact_reward": float}

    def __init__(self, game: AnswerGame | None = None, utility: str = "kl", reward_mode: str = "group",
                 estimator: str = "aqp", group_size: int = 8, opponent: np.ndarray | None = None,
                 render_mode: str | None = None, **game_kwargs: Any):
        check_choice("reward_mode", reward_mode, REWARD_MODES)
        self.group_size = check_int("group_size", group_size, low=2)
        self.g_log, self.g_poly = estimator_tables(utility, estimator, self.group_size)
        game = env_game(make_answer_game, game, **game_kwargs)
        super().__init__(game, sequence_episode(game), render_mode)
        self.utility, self.estimator, self.reward_mode = utility, estimator, reward_mode
        self.set_opponent(game.ref if opponent is None else opponent)

    def set_opponent(self, policy: np.ndarray) -> None:
        """Set the opponent's sequence distribution [X, S]: its answer marginal is the reward's ν."""
        self.opponent = self.game.check_policy(policy, "opponent")
        self.opponent_marginal = self.game.answer_marginal(self.opponent)

    def finish(self, context: int, tokens: np.ndarray, length: int) -> Ending:
        """Reward the finished trace's answer at the opponent's answer marginal (module table)."""
        game, seq = self.game, int(self.game.sequences.index(tokens[None])[0])
        z = int(game.answers[seq])
        exact = float(game.answer_rewards(self.opponent_marginal[[context]], self.utility, [context])[0, z])
        if self.reward_mode == "exact":
            reward, count = exact, 0
        else:
            others = game.sample_responses(self.opponent, np.full(self.group_size - 1, context), self.np_random)
            group = np.concatenate([[z], game.answers[others]])[None]
            count = int(group_counts(group)[0, 0])
            log_target = np.log(game.target[[context]])
            reward = float(group_rewards(group, log_target, self.utility, self.g_log, self.g_poly)[0, 0])
        return Ending(reward, {"sequence": seq, "answer": z, "count": count, "exact_reward": exact},
                      f"'{game.sequences.decode(seq)}' -> answer {z} (k={count}), exact r(z)={exact:.3f}")
