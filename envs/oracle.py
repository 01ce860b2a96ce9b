"""The counted preference oracle: the base of every game.

A game has contexts x (prompts) with a distribution ρ and a feature vector each, responses y
(integer handles: a response index, a sequence index, a stored generation), a reference policy
π_ref to sample from, and a preference P(y ≻ y' | x). Learners see the preference only through
the counted oracle: :meth:`PreferenceOracle.compare` draws Bernoulli outcomes (``queries``) and
:meth:`PreferenceOracle.prob` reads probabilities (``exact_calls``), so no algorithm ever
estimates its own cost. Every game takes one budget, ``max_queries``: the paid evaluations of a
run (:meth:`PreferenceOracle.spend`; :class:`BudgetExhausted` when it is spent).

Each game class declares what it is (as OpenSpiel's ``GameType`` does), with no default — a class
that leaves one out is refused when it is created — and algorithms read the declarations instead
of the class:

- ``responses``: which policy family applies — ``"indexed"`` (a table over Y responses),
  ``"tokens"`` (token sequences, sequence policies) or ``"text"`` (generated text, a language model);
- ``payoff``: ``"preference"`` (the payoff is P itself) or ``"answer_utility"`` (a utility of the
  answer marginal) — which losses apply;
- ``exact``: the exact services (equilibria, exploitability, exact metrics), by whatever method;
- ``listed``: the responses are a table — π_ref is ``ref`` [X, Y] and a policy can be read whole
  (:data:`MAX_LISTED_READ` bounds what an algorithm may read each iteration).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import metrics
from .checks import check_array, check_int


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of ``probs`` [n, Y] by inverse CDF (vectorized, no Python loop)."""
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1] + (1,)) * cdf[..., -1:]
    return np.minimum((u > cdf).sum(axis=-1), probs.shape[-1] - 1)


def sample_table_rows(table: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from each row ``table[rows]`` of a table [m, Y] (row indices [n]): the draws of
    ``sample_categorical(table[rows], rng)``, with each distinct row's CDF built once and searched,
    O(m·Y + n log Y) instead of O(n·Y) memory and time."""
    rows = np.asarray(rows)
    cdf = np.cumsum(table, axis=-1)
    u = rng.random(len(rows)) * cdf[rows, -1]
    out = np.empty(len(rows), dtype=np.int64)
    for row in np.unique(rows):
        where = np.flatnonzero(rows == row)
        out[where] = np.searchsorted(cdf[row], u[where], side="left")  # = (u > cdf).sum(), as sample_categorical
    return np.minimum(out, table.shape[-1] - 1)


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(p‖q) over the last axis from log-probabilities (p and q each summing to 1).

    Written Σ p·(ℓ − 1 + e^{−ℓ}) with ℓ = log p − log q: every term is ≥ 0, so nothing cancels
    between terms (accurate to a relative error near p = q, where the usual Σ p·ℓ is lost to
    rounding), and no probability is exponentiated where it would underflow (a policy at 1e-300
    of its target still gives a finite KL). A term is q where p = 0, inf where q = 0 < p.
    """
    log_p, log_q = np.broadcast_arrays(np.asarray(log_p, np.float64), np.asarray(log_q, np.float64))
    p, q = np.exp(log_p), np.exp(log_q)
    with np.errstate(invalid="ignore", over="ignore"):
        ell = log_p - log_q
        terms = np.where(ell > -1.0, p * (ell + np.expm1(-ell)), p * ell - p + q)
    return np.where(log_p == -np.inf, q, terms).sum(axis=-1)


EXACT_SERVICES = ("P", "nash", "exploitability", "win_rates", "win_rate", "reward")  # PreferenceGame's
RESPONSES = ("indexed", "tokens", "text")  # the policy families, by what a response is
PAYOFFS = ("preference", "answer_utility")
DECLARATIONS = {"responses": RESPONSES, "payoff": PAYOFFS, "exact": (False, True), "listed": (False, True)}
BUDGET_KEYWORD = "max_queries"  # every game's one budget keyword (PreferenceOracle, gym.make)
MAX_LISTED_READ = 8192  # responses per context up to which a listed game's table may be read every iteration


class BudgetExhausted(RuntimeError):
    """The game's ``max_queries`` is spent; the run stops (with a checkpoint) instead of paying more."""

    @classmethod
    def of(cls, owner: str, spent: int, budget: int, detail: str) -> BudgetExhausted:
        """The error of ``owner``'s budget, worded once: what was spent of it, ``detail``, how to raise it."""
        return cls(f"{owner} has spent {spent} of its budget of {budget} queries {detail}; raise it to continue "
                   "(`prefzoo train --resume RUN --max-calls N`)")


def declarations(game_class: type) -> dict[str, Any]:
    """The declarations of a game class, read from the class (no game is built)."""
    return {name: getattr(game_class, name) for name in DECLARATIONS}


def iid_mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean of independent draws ``values`` and its standard error sd/√n (NaN with fewer than two)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def clustered_mean_se(values: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """Mean of ``values`` and its cluster-robust standard error (CR1): the samples of one cluster
    (e.g. the responses to one prompt) are not independent, the clusters are, so
    se² = G/(G − 1)·Σ_g (Σ_{i∈g} (v_i − v̄))² / N² over G clusters and N values (with equal cluster
    sizes: the sd of the cluster means over √G). NaN with fewer than two clusters."""
    values = np.asarray(values, dtype=np.float64)
    _, index = np.unique(clusters, return_inverse=True)
    groups = index.max() + 1 if len(values) else 0
    mean = float(values.mean()) if len(values) else float("nan")
    if groups < 2:
        return mean, float("nan")
    sums = np.bincount(index, weights=values - mean)
    return mean, float(np.sqrt(groups / (groups - 1) * (sums**2).sum()) / len(values))


class TablePolicy:
    """A policy given as a table [X, Y] (and its logarithm, when the owner keeps it in log space),
    with the sampler interface of the trained policies (``sample(contexts, rng)``): how exact-mode
    algorithms, and those that train no policy, are evaluated (:meth:`PreferenceOracle.evaluate`)."""

    def __init__(self, probs: np.ndarray, log_probs: np.ndarray | None = None):
        self.table = np.asarray(probs, dtype=np.float64)
        if log_probs is None:
            with np.errstate(divide="ignore"):
                log_probs = np.log(self.table)
        self.log_table = np.asarray(log_probs, dtype=np.float64)

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return sample_table_rows(self.table, contexts, rng)

    def export(self, run_dir: str | os.PathLike) -> list[Path]:
        """Write the table as ``policy.npy`` in ``run_dir``; returns the path written."""
        path = Path(run_dir) / "policy.npy"
        np.save(path, self.table)
        return [path]


class PreferenceOracle:
    """A counted preference oracle over contexts and responses (the base of every game).

    Args:
        n_contexts: number of contexts X.
        rho: context distribution [X] (default uniform).
        features: context feature vectors [X, d] (default the identity: one-hot contexts).
        ref: π_ref as a table [X, Y] when the responses are listed, else ``None`` (the subclass
            then implements :meth:`sample_ref`).
        seed: seed of the oracle's own generator, used by :meth:`compare` when no ``rng`` is given.
        max_queries: the run's budget of paid evaluations (:meth:`spend`; None: no budget).

    A subclass implements :meth:`preference` (the uncounted probability; the ground truth an env
    reports in ``info``), declares ``responses``, ``payoff``, ``exact`` and ``listed`` (module
    docstring) and may override :meth:`evaluate` and ``headline``.

    Raises:
        ValueError: an array of the wrong shape, with NaN/inf, or not a distribution.
        TypeError: (at class creation) a declaration missing or outside its values.
    """

    headline: ClassVar[str] = metrics.EST_WIN_RATE_VS_REF  # the metric a run is judged by
    # the oracle's comparisons are its paid evaluations; False: the game charges its own (a judge's)
    pays_per_query: ClassVar[bool] = True
    why_not_exact: ClassVar[str] = "it is known only through its counted oracle"
    # P is Bradley–Terry on a counted scalar reward (``rewards(x, y)``), which reward-based algorithms train on
    has_reward: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        missing = [name for name in DECLARATIONS if not hasattr(cls, name)]
        if missing:
            allowed = ", ".join(f"{name} in {DECLARATIONS[name]}" for name in missing)
            raise TypeError(f"game class {cls.__name__} must declare {', '.join(missing)} (class attributes; "
                            f"allowed values: {allowed})")
        for name, allowed in DECLARATIONS.items():
            value = getattr(cls, name)
            if value not in allowed or type(value) is not type(allowed[0]):
                raise TypeError(f"game class {cls.__name__} declares {name}={value!r}; expected one of {allowed}")

    def __init__(self, n_contexts: int, rho: Any = None, features: Any = None, ref: Any = None,
                 seed: int | None = None, max_queries: int | None = None):
        self.n_contexts = int(n_contexts)
        X = self.n_contexts
        self.rho = np.full(X, 1.0 / X) if rho is None else check_array("rho", rho, (X,), simplex=True)
        self.features = np.eye(X) if features is None else check_array("features", features, (X, None))
        self.n_actions = None if ref is None else np.shape(ref)[-1]
        self.ref = None if ref is None else self.check_policy(ref, "ref")
        self.rng = np.random.default_rng(seed)
        self.set_budget(max_queries)
        self.queries = 0  # Bernoulli comparisons drawn
        self.exact_calls = 0  # probabilities read through prob()
        self.spent = 0  # paid evaluations, counted against max_queries

    def __getattr__(self, name: str):
        """Called only for a missing attribute: an exact service asked of a game without them gets
        an error that says why, instead of a bare ``AttributeError``."""
        if name in EXACT_SERVICES:
            raise AttributeError(f"{type(self).__name__}.{name} is an exact service, and this game has none "
                                 f"(exact=False): {self.why_not_exact}. Sample and compare instead "
                                 "(compare, prob), in sample mode")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ to implement
    def preference(self, x: np.ndarray, y: np.ndarray, y2: np.ndarray) -> np.ndarray:
        """P(y ≻ y2 | x) for validated, broadcast index arrays; uncounted."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the counted oracle
    def compare(self, x, y, y2, rng: np.random.Generator | None = None) -> np.ndarray:
        """Bernoulli comparisons: True where ``y`` is preferred to ``y2`` in context ``x``.

        Arrays broadcast; each element is one counted query. Draws from ``rng`` (the caller's
        generator: the env's ``np_random`` or the algorithm's ``rng``), else the oracle's own.
        """
        x, y, y2 = self.check_indices(x, y, y2)
        self._pay(x.size)
        p = self.preference(x, y, y2)
        self.queries += x.size
        return (rng or self.rng).random(x.shape) < p

    def prob(self, x, y, y2) -> np.ndarray:
        """P(y ≻ y2 | x) (each element counted in ``exact_calls``)."""
        x, y, y2 = self.check_indices(x, y, y2)
        self._pay(x.size)
        p = self.preference(x, y, y2)
        self.exact_calls += x.size
        return p

    def check_indices(self, x, y, y2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcast integer arrays: contexts in [0, X), responses in [0, Y) where Y is known."""
        x, y, y2 = np.broadcast_arrays(np.asarray(x), np.asarray(y), np.asarray(y2))
        for arr, name, n in ((x, "x", self.n_contexts), (y, "y", self.n_actions), (y2, "y2", self.n_actions)):
            if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0
                             or (n is not None and arr.max() >= n)):
                raise ValueError(f"{name} must hold integer indices in [0, {n or 'inf'}), got {arr!r}")
        return x, y, y2

    # ------------------------------------------------------------------ the budget
    def set_budget(self, max_queries: int | None) -> None:
        """Cap the run's paid evaluations at ``max_queries`` (None: no cap); a resumed run may raise it.

        Raises:
            TypeError, ValueError: not an integer >= 0 (a bool, a float such as inf, a string).
        """
        self.max_queries = None if max_queries is None else check_int("max_queries", max_queries, low=0)

    def spend(self, n: int) -> None:
        """Charge ``n`` paid evaluations against ``max_queries``, or raise before paying any (a
        negative ``n`` refunds evaluations charged but never made, e.g. a judge that failed).

        Raises:
            BudgetExhausted: ``spent + n`` would pass ``max_queries`` (nothing is counted).
        """
        if self.max_queries is not None and self.spent + n > self.max_queries:
            raise BudgetExhausted.of(type(self).__name__, self.spent, self.max_queries, f"({n} more needed)")
        self.spent += n

    def _pay(self, n: int) -> None:
        if self.pays_per_query:
            self.spend(n)

    @property
    def table_readable(self) -> bool:
        """Whether an algorithm may read the whole response table each iteration (every response's
        probability, the policy as a table): the responses are listed, at most
        :data:`MAX_LISTED_READ` per context."""
        return self.listed and self.n_actions <= MAX_LISTED_READ

    def counter_state(self) -> dict[str, Any]:
        """The oracle's counters (plain data): an algorithm's checkpoint holds them, so a resumed
        run counts on from where it stopped and its budget counts the whole run."""
        return {"queries": self.queries, "exact_calls": self.exact_calls, "spent": self.spent}

    def load_counter_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`counter_state` (the budget stays this game's own ``max_queries``)."""
        self.queries, self.exact_calls, self.spent = state["queries"], state["exact_calls"], state["spent"]

    # ------------------------------------------------------------------ contexts and π_ref
    def sample_contexts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` contexts drawn from ρ."""
        cdf = np.cumsum(self.rho)
        return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), self.n_contexts - 1)

    def sample_responses(self, pi: np.ndarray, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One response per context from a policy table ``pi`` [X, Y]."""
        return sample_table_rows(pi, contexts, rng)

    def sample_ref(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One response per context from π_ref."""
        return self.sample_responses(self.ref, contexts, rng)

    def expectation(self, per_context: np.ndarray) -> float:
        """ρ-weighted mean of a per-context quantity."""
        return float(self.rho @ per_context)

    def evaluate(self, policy: Any, rng: np.random.Generator) -> dict[str, float]:
        """The game's quality metrics of ``policy``, a sampler (``policy.sample(contexts, rng) ->
        responses``; a :class:`TablePolicy` for a table). Here, on a game without exact services:
        the estimated win rate against π_ref with its standard error on :meth:`evaluation_contexts`
        (:meth:`estimate_win_rates`; uncounted). Games with exact services override it."""
        contexts = self.evaluation_contexts(rng)
        mean, se = self.estimate_win_rates([policy.sample, self.sample_ref], contexts, rng)
        return {metrics.EST_WIN_RATE_VS_REF: float(mean[0, 1]), metrics.EST_WIN_RATE_VS_REF_SE: float(se[0, 1])}

    def evaluation_contexts(self, rng: np.random.Generator) -> np.ndarray:
        """The contexts on which policies are compared by estimates: 1,024 draws from ρ."""
        return self.sample_contexts(1024, rng)

    def estimate_win_rates(self, samplers: list, contexts: np.ndarray,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """P̂(π_i ≻ π_j) and its standard error, [k, k] each, for ``samplers`` (callables
        ``(contexts, rng) -> responses``, e.g. ``policy.sample`` or :meth:`sample_ref`): every
        player answers each of ``contexts`` (e.g. :meth:`evaluation_contexts`) once, and (i, j) is
        the mean of P(y_i ≻ y_j | x) over them (the probability, not a Bernoulli draw; uncounted),
        with s.e. sd/√n. The matrix is antisymmetric about ½ when P is."""
        responses = [sample(contexts, rng) for sample in samplers]
        k = len(samplers)
        mean, se = np.full((k, k), 0.5), np.zeros((k, k))
        for i, j in zip(*np.triu_indices(k, 1), strict=True):
            mean[i, j], se[i, j] = iid_mean_se(self.preference(contexts, responses[i], responses[j]))
            mean[j, i], se[j, i] = 1.0 - mean[i, j], se[i, j]
        return mean, se

    # ------------------------------------------------------------------ policies as tables
    def check_policy(self, pi: Any, name: str = "pi") -> np.ndarray:
        """Return ``pi`` as a float array [X, Y] after checking it is a policy of this game.

        Raises:
            ValueError: wrong shape, a NaN/inf, a negative entry, or a row not summing to 1.
        """
        if self.n_actions is None:
            raise ValueError(f"this game's responses are not listed ({type(self).__name__}, listed=False): "
                             f"{name} cannot be a [X, Y] policy")
        expected = (self.n_contexts, self.n_actions)
        if np.shape(pi) != expected:
            raise ValueError(f"{name} must be a policy of shape [X, Y] = {list(expected)}, got {list(np.shape(pi))}")
        return np.clip(check_array(name, pi, expected, simplex=True), 0.0, None)

    def kl(self, pi, mu) -> np.ndarray:
        """KL(π ‖ μ) per context, [X] (0·log 0 = 0; inf where μ = 0 < π), by :func:`kl_divergence`."""
        pi, mu = self.check_policy(pi, "pi"), self.check_policy(mu, "mu")
        with np.errstate(divide="ignore"):
            return kl_divergence(np.log(pi), np.log(mu))
