"""Log-reward estimator tables for answer-level fine-tuning (ALFT).

Paper: Mohri, Schneider, Zhong, "Generalized Distributional Alignment Games for Unbiased
Answer-Level Fine-Tuning", arXiv:2605.02435. The formulas below are standard mathematics
consistent with its abstract (design §5, *reconstruction*); tests check them against exact
binomial sums, never against paper tables.

**Setting.** K rollouts of one prompt; a rollout whose answer has probability p sees its answer
k times among the K (itself included), so c = k − 1 ~ Binomial(K−1, p). The answer-level reward
needs log p. An estimator is a **lookup table** g[k], k = 1..K (``g[k-1]`` in code): online cost
is one count and one lookup. Its mean

    E_p g = Σ_{c=0}^{K-1} g[c+1] · C(K−1, c) p^c (1−p)^{K−1−c}

is the Bernstein polynomial of degree K−1 with coefficients g. Hence:

* **Jensen bias.** log is concave, so plugging a noisy estimate of p into it is biased; with
  k = 1 + c ≥ 1 the plug-in log(k/K) has bias ≈ (1−p)/(2Kp): about 0.5 nats at p = 1/K.
* **No unbiased estimator of log p exists:** every table's mean is a polynomial of degree K−1,
  and log p is not one (it is unbounded at 0). The quality of a table is judged by the
  **p-weighted bias** sup_p p·|E_p g − log p|: in the policy gradient an answer of probability
  p is sampled with probability p, so its reward error enters weighted by p.
* **Polynomial rewards have unbiased tables** (U-statistics): C(c, m)/C(K−1, m) is unbiased
  for p^m when m ≤ K−1 (:func:`ustat_poly` for Σ_m a_m p^m, e.g. Tsallis/Gini rewards).

**Tables** (:func:`table`; ``table(name, K, **options) -> ndarray [K]``):

=============  ============================================================================
``plugin``     log(k/K). p-weighted bias Θ(1/K).
``loo_plugin`` leave-one-out plug-in with additive smoothing ``a`` (default ½,
               Krichevsky–Trofimov): log((k−1+a)/(K−1+2a)). The raw leave-one-out
               log((k−1)/(K−1)) is −∞ at k = 1; ``a`` makes it finite.
``digamma``    ψ(k) − ψ(K): bias Σ_{v≥K} (1−p)^v / v ≥ 0, exponentially small once p ≫ 1/K,
               but p-weighted bias Θ(1/K) from p ≲ 1/K.
``ustat``      option ``m``: C(k−1, m)/C(K−1, m), unbiased for p^m (not a log estimator).
``minimax``    argmin_g sup_p p·|E_p g − log p|. A weighted Chebyshev approximation of
               p log p by span{p, …, p^K} (a Haar system, so the optimum is unique and
               equioscillates). Error E*_K ≈ 0.325/K² (Θ(1/K²), Ditzian–Totik). The table
               oscillates with entries growing like ~10^(K/4): sd 109 at K = 16, 1.6·10⁶ at
               K = 32, and for K ≳ 48 the table is no longer representable in float64 (see
               :func:`build`); use ``aqp``.
``aqp``        variance-optimal augmented polynomial program: minimize sup_p p·E_p[(g − log p)²]
               (the p-weighted MSE, i.e. the answer's contribution to the policy-gradient
               noise) subject to sup_p p·|bias_p| ≤ (1+eps)·E*_K; option ``monotone`` adds
               g[k] ≤ g[k+1]. Monotone tables only reach p-weighted bias ≈ 0.06/K (Θ(1/K)),
               so ``monotone=True`` is infeasible at the default eps = 2 for K ≥ 16.
=============  ============================================================================

``minimax`` and ``aqp`` are solved offline (scipy HiGHS / SLSQP, no optional solver), cached in
``$PREFZOO_CACHE/estimators`` (default ``~/.cache/prefzoo/estimators``) and shipped for
K ∈ {4, 8, 16, 32, 64} in ``estimator_tables.json``; ``python -m prefzoo.envs.estimators
--build`` regenerates that file. :func:`bias`, :func:`variance`, :func:`p_weighted_sup_bias` and
:func:`worst_sd` are exact (binomial probabilities, no simulation).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np
from numpy.polynomial import chebyshev
from scipy.optimize import linprog, minimize
from scipy.special import digamma
from scipy.stats import binom

from .checks import check_choice, check_int, check_real, closest_hint

ESTIMATORS = ("plugin", "loo_plugin", "digamma", "ustat", "minimax", "aqp")
LOG_ESTIMATORS = ("plugin", "loo_plugin", "digamma", "minimax", "aqp")
SHIPPED_K = (4, 8, 16, 32, 64)
SHIPPED_PATH = Path(__file__).with_name("estimator_tables.json")
CACHE_ENV = "PREFZOO_CACHE"
SOLVER_VERSION = 1  # part of every cache key: bump when a solver or its grids change

# Options per estimator with their defaults (``ustat``'s m has none: it is required).
_OPTIONS = {"plugin": {}, "loo_plugin": {"a": 0.5}, "digamma": {}, "ustat": {"m": None},
            "minimax": {}, "aqp": {"eps": 2.0, "monotone": False}}
_SOLVED = ("minimax", "aqp")  # built by an optimizer, hence cached; the rest are closed forms
_MEMORY: dict[str, dict] = {}
_SHIPPED: dict[str, dict] | None = None


# ---- exact bias and variance ---------------------------------------------------------------

def _pmf(K: int, p: np.ndarray) -> np.ndarray:
    """P(c = k−1) for c ~ Bin(K−1, p): [len(p), K]."""
    return binom.pmf(np.arange(K)[None, :], K - 1, p[:, None])


def _as_table(g) -> np.ndarray:
    g = np.asarray(g, dtype=float)
    if g.ndim != 1 or g.size < 2:
        raise ValueError(f"a table is a 1-D array of length K ≥ 2, got shape {g.shape}")
    return g


def _as_p(p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if np.any((p <= 0) | (p > 1)):
        raise ValueError("p must lie in (0, 1]")
    return p


def bias(g, p) -> np.ndarray:
    """Exact bias E_p g − log p of table ``g`` [K] at probabilities ``p`` (any shape, in (0, 1])."""
    g, p = _as_table(g), _as_p(p)
    flat = p.reshape(-1)
    return (_pmf(g.size, flat) @ g - np.log(flat)).reshape(p.shape)


def variance(g, p) -> np.ndarray:
    """Exact variance Var_p g[c+1], c ~ Bin(K−1, p), at ``p`` (any shape, in (0, 1])."""
    g, p = _as_table(g), _as_p(p)
    w = _pmf(g.size, p.reshape(-1))
    mean = w @ g
    return (w * (g[None, :] - mean[:, None]) ** 2).sum(axis=1).reshape(p.shape)


def eval_grid(K: int) -> np.ndarray:
    """The fine p-grid of every sup below: geometric from 1e-8/K² (the p-weighted errors peak
    near p ~ 1/K²) plus Chebyshev-spaced points on (0, 1]."""
    j = np.arange(1, 10_001)
    return np.unique(np.concatenate([np.geomspace(1e-8 / K**2, 1.0, 10_000),
                                     0.5 * (1 - np.cos(np.pi * j / j[-1]))]))


def p_weighted_sup_bias(g) -> float:
    """sup_p p·|E_p g − log p| over :func:`eval_grid` (the minimax criterion)."""
    grid = eval_grid(len(g))
    return float(np.max(grid * np.abs(bias(g, grid))))


def worst_sd(g) -> float:
    """sup_p sd_p(g) over :func:`eval_grid` (unweighted worst-case standard deviation)."""
    return float(np.sqrt(np.max(variance(g, eval_grid(len(g))))))


# ---- closed-form tables --------------------------------------------------------------------

def ustat_poly(coeffs, K: int) -> np.ndarray:
    """Unbiased table for the polynomial reward Σ_m coeffs[m]·p^m (U-statistics).

    g[k] = Σ_m coeffs[m]·C(k−1, m)/C(K−1, m); exact for degree ≤ K−1 (arXiv:2605.02435, §U-stat).

    Raises:
        ValueError: if K < 2 or the degree exceeds K−1.
    """
    K = _check_K(K)
    coeffs = np.atleast_1d(np.asarray(coeffs, dtype=float))
    if coeffs.ndim != 1 or np.flatnonzero(coeffs).max(initial=0) > K - 1:
        raise ValueError(f"ustat needs a polynomial of degree m ≤ K−1 = {K - 1}, "
                         f"got coefficients of length {coeffs.size}")
    basis = np.array([[comb(c, m) / comb(K - 1, m) for m in range(coeffs.size)] for c in range(K)])
    return basis @ coeffs


def _plugin(K: int) -> dict:
    return {"table": np.log(np.arange(1, K + 1) / K)}


def _loo_plugin(K: int, a: float) -> dict:
    a = check_real("a", a, 0, low_open=True)  # loo_plugin's smoothing
    return {"table": np.log((np.arange(K) + a) / (K - 1 + 2 * a))}


def _digamma(K: int) -> dict:
    return {"table": digamma(np.arange(1, K + 1)) - digamma(K)}


def _ustat(K: int, m) -> dict:
    if m is None:
        raise ValueError(f"ustat needs its option m, an integer in [0, K−1 = {K - 1}]")
    m = check_int("m", m, low=0, high=K - 1)  # ustat's polynomial degree
    return {"table": ustat_poly(np.eye(m + 1)[-1], K)}


# ---- minimax: weighted Chebyshev approximation of p log p ------------------------------------

def _fit_grid(K: int, n: int) -> np.ndarray:
    """Constraint grid of the solvers: n Chebyshev-spaced points on (0, 1] (spacing ~1/K² near
    0) plus n geometric ones from 1e-4/K²; exchange rounds add points where needed."""
    return np.unique(np.concatenate([0.5 * (1 - np.cos(np.pi * np.arange(1, n + 1) / n)),
                                     np.geomspace(1e-4 / K**2, 1.0, n)]))


def _new_peaks(err: np.ndarray, grid: np.ndarray, level: float) -> np.ndarray:
    """Grid points where |err| has a local maximum above ``level`` (the exchange step)."""
    e = np.abs(err)
    inner = np.flatnonzero((e[1:-1] >= e[:-2]) & (e[1:-1] >= e[2:]) & (e[1:-1] > level)) + 1
    return grid[inner]


def _chebyshev_to_table(a: np.ndarray) -> np.ndarray:
    """Bernstein coefficients (the table) of Σ_j a_j T_j(2p−1), in exact rational arithmetic.

    T_j(2p−1) has integer monomial coefficients, and p^m = E_p[C(c, m)/C(n, m)] (the U-statistic),
    so g[c] = Σ_m b_m C(c, m)/C(n, m) with b the monomial coefficients. Only the final rounding
    to float64 is inexact.
    """
    n = a.size - 1
    shifted = [[1], [-1, 2]]  # T_0, T_1(2p-1) = 2p - 1
    for j in range(2, n + 1):
        new = [0] * (j + 1)
        for m, cf in enumerate(shifted[j - 1]):
            new[m] -= 2 * cf
            new[m + 1] += 4 * cf
        for m, cf in enumerate(shifted[j - 2]):
            new[m] -= cf
        shifted.append(new)
    mono = [Fraction(0)] * (n + 1)
    for j in range(n + 1):
        aj = Fraction(float(a[j]))
        for m, cf in enumerate(shifted[j]):
            mono[m] += aj * cf
    return np.array([float(sum(mono[m] * Fraction(comb(c, m), comb(n, m)) for m in range(c + 1)))
                     for c in range(n + 1)])


def _minimax(K: int) -> dict:
    """Solve min_g sup_p p·|E_p g − log p| as an LP with exchange (arXiv:2605.02435, minimax).

    Variables are the coefficients of the mean polynomial q(p) = E_p g in the Chebyshev basis
    T_j(2p−1), j < K: that basis is well conditioned on [0, 1], while the table (Bernstein
    coefficients) of the optimum has entries ~10^(K/4) that no LP tolerance could resolve. Rows
    are scaled by K² so HiGHS's 1e-9 feasibility tolerance is relative to E*_K ≈ 0.3/K². After
    each LP, local maxima of the error on :func:`eval_grid` that exceed the LP value are added to
    the grid (Remez-style exchange). ``lower`` (the grid LP) and ``value`` (the solution's sup on
    the fine grid) bracket E*_K.
    """
    grid, fine, scale = _fit_grid(K, 8 * K + 200), eval_grid(K), float(K * K)
    for _ in range(8):
        vander = scale * grid[:, None] * chebyshev.chebvander(2 * grid - 1, K - 1)
        rhs = scale * grid * np.log(grid)
        ones = np.ones((grid.size, 1))
        res = linprog(np.r_[np.zeros(K), 1.0], A_ub=np.block([[vander, -ones], [-vander, -ones]]),
                      b_ub=np.r_[rhs, -rhs], bounds=[(None, None)] * (K + 1), method="highs",
                      options={"primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9})
        if res.status != 0:
            raise RuntimeError(f"minimax LP failed at K={K}: {res.message}")
        coef, lower = res.x[:K], res.x[K] / scale
        err = fine * (chebyshev.chebval(2 * fine - 1, coef) - np.log(fine))
        value = float(np.max(np.abs(err)))
        peaks = _new_peaks(err, fine, lower * (1 + 1e-7))
        if peaks.size == 0:
            break
        grid = np.union1d(grid, peaks)
    return {"table": _chebyshev_to_table(coef), "value": value, "lower": float(lower)}


def minimax_value(K: int) -> float:
    """E*_K = min_g sup_p p·|E_p g − log p| (computed from the Chebyshev form, so exact to ~1e-7
    relative even where the float64 minimax table is not; see :func:`_minimax`)."""
    return float(_entry("minimax", _check_K(K), {})["value"])


# ---- aqp: minimum p-weighted MSE under a p-weighted bias budget ------------------------------

def _aqp_linear_constraints(K: int, bias_grid: np.ndarray, tau: float, monotone: bool):
    """(A, b) with A @ (g, s) ≤ b: |p·(E_p g − log p)| within the bias budget τ (tightened by 1e-3)
    on ``bias_grid``, scaled by K², and g[k] ≤ g[k+1] when ``monotone``."""
    scale = float(K * K)
    rows = scale * bias_grid[:, None] * _pmf(K, bias_grid)
    rhs, budget = scale * bias_grid * np.log(bias_grid), scale * tau * (1 - 1e-3)
    a_bias = np.hstack([np.vstack([rows, -rows]), np.zeros((2 * bias_grid.size, 1))])
    b_bias = np.r_[budget + rhs, budget - rhs]
    if not monotone:
        return a_bias, b_bias
    mono = np.zeros((K - 1, K + 1))
    mono[np.arange(K - 1), np.arange(K - 1)], mono[np.arange(K - 1), np.arange(1, K)] = 1.0, -1.0
    return np.vstack([a_bias, mono]), np.r_[b_bias, np.zeros(K - 1)]


def _aqp(K: int, eps: float, monotone: bool) -> dict:
    """Variance-optimal AQP table (arXiv:2605.02435, AQP; objective is a reconstruction).

        minimize_g  sup_p p·E_p[(g − log p)²]
        subject to  sup_p p·|E_p g − log p| ≤ τ = (1+eps)·E*_K     [and g[k] ≤ g[k+1]]

    A convex QCQP (each p·E_p[(g − log p)²] is a convex quadratic in g), solved in epigraph form
    min s s.t. p·MSE_p(g) ≤ s by SLSQP (a KKT point of a convex program is global) on grids of p,
    with the bias budget tightened by 1e-3 and exchange rounds that add the fine-grid peaks of
    both constraints. ``lower`` certifies optimality: the LP with the tangent planes of every
    p·MSE_p at the solution is a relaxation of the grid problem, so its value bounds the optimum
    from below; ``gap`` = 1 − lower/objective, with ``objective`` the sup on the fine grid.
    """
    eps = check_real("eps", eps, 0, low_open=True)  # aqp's bias budget (1+eps)·E*_K
    tau, fine = (1 + eps) * minimax_value(K), eval_grid(K)
    fine_pmf, fine_log = _pmf(K, fine), np.log(fine)
    x = np.r_[_digamma(K)["table"], 10.0]  # (g, s)
    obj_grid, bias_grid = _fit_grid(K, 100), _fit_grid(K, 2 * K + 50)
    for _ in range(10):
        w_obj, log_obj = _pmf(K, obj_grid), np.log(obj_grid)

        def mse(x, w=w_obj, lg=log_obj, p=obj_grid):  # p·MSE_p(g) on the grid and its g-gradient
            dev = x[:K][None, :] - lg[:, None]
            return p * (w * dev**2).sum(axis=1), 2 * p[:, None] * w * dev

        a_lin, b_lin = _aqp_linear_constraints(K, bias_grid, tau, monotone)
        ones = np.ones((obj_grid.size, 1))
        cons = [{"type": "ineq", "fun": lambda x, f=mse: x[K] - f(x)[0],
                 "jac": lambda x, f=mse, o=ones: np.hstack([-f(x)[1], o])},
                {"type": "ineq", "fun": lambda x, A=a_lin, b=b_lin: b - A @ x,
                 "jac": lambda x, A=a_lin: -A}]
        res = minimize(lambda x: x[K], x, jac=lambda x: np.eye(K + 1)[K], method="SLSQP",
                       constraints=cons, options={"maxiter": 1000, "ftol": 1e-12})
        x = res.x
        err = fine * (fine_pmf @ x[:K] - fine_log)
        fine_mse = fine * (fine_pmf * (x[None, :K] - fine_log[:, None]) ** 2).sum(axis=1)
        bias_peaks = _new_peaks(err, fine, tau)
        obj_peaks = _new_peaks(fine_mse, fine, x[K] * (1 + 1e-4))
        if bias_peaks.size + obj_peaks.size == 0:
            break
        bias_grid, obj_grid = np.union1d(bias_grid, bias_peaks), np.union1d(obj_grid, obj_peaks)
    if np.max(np.abs(err)) > tau * 1.001:  # SLSQP's own status is not trusted: feasibility and
        # the LP certificate below are what count
        hint = (" Monotone tables only reach p-weighted bias ≈ 0.06/K; raise eps or drop monotone."
                if monotone else "")
        raise ValueError(f"aqp at K={K}, eps={eps}, monotone={monotone} found no feasible table "
                         f"(SLSQP: {res.message}).{hint}")
    g, (f, grad) = x[:K], mse(x)
    lp = linprog(np.r_[np.zeros(K), 1.0], A_ub=np.vstack([np.hstack([grad, -ones]), a_lin]),
                 b_ub=np.r_[grad @ g - f, b_lin], bounds=[(-1e3, 1e3)] * K + [(None, None)],
                 method="highs")
    objective = float(np.max(fine_mse))
    lower = float(lp.fun) if lp.status == 0 else float("nan")
    return {"table": g, "tau": tau, "objective": objective, "lower": lower,
            "gap": 1 - lower / objective}


_BUILDERS = {"plugin": _plugin, "loo_plugin": _loo_plugin, "digamma": _digamma, "ustat": _ustat,
             "minimax": _minimax, "aqp": _aqp}


# ---- public API and caching ----------------------------------------------------------------

def _check_K(K) -> int:
    return check_int("K", K, low=2)  # rollouts per prompt


def _resolve(name: str, options: dict) -> dict:
    check_choice("estimator", name, ESTIMATORS)
    allowed = _OPTIONS[name]
    for key in options:
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise TypeError(f"estimator {name!r} has no option {key!r}{closest_hint(key, allowed)}; "
                            f"options: {known}")
    resolved = {**allowed, **options}
    if name == "aqp":
        resolved = {"eps": float(resolved["eps"]), "monotone": bool(resolved["monotone"])}
    return resolved


def _key(name: str, K: int, options: dict) -> str:
    opts = "".join(f"-{k}={options[k]!r}" for k in sorted(options))
    return f"{name}-K{K}{opts}-v{SOLVER_VERSION}"


def cache_dir() -> Path:
    """``$PREFZOO_CACHE/estimators``, else ``$XDG_CACHE_HOME/prefzoo/estimators`` or
    ``~/.cache/prefzoo/estimators``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "estimators"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prefzoo" / "estimators"


def _to_json(entry: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in entry.items()}


def _from_json(data: dict, K: int) -> dict:
    entry = {k: (np.asarray(v, dtype=float) if k == "table" else float(v)) for k, v in data.items()}
    if entry["table"].shape != (K,) or not np.all(np.isfinite(entry["table"])):
        raise ValueError("bad table")
    return entry


def _shipped() -> dict:
    global _SHIPPED
    if _SHIPPED is None:
        try:
            _SHIPPED = json.loads(SHIPPED_PATH.read_text())["tables"]
        except (OSError, ValueError, KeyError):
            _SHIPPED = {}
    return _SHIPPED


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as fh:
        fh.write(text)
    os.chmod(fh.name, 0o644)
    os.replace(fh.name, path)


def build(name: str, K: int, **options) -> dict:
    """Solve one table now, bypassing every cache.

    Returns:
        ``{"table": ndarray [K], "build_s": float, ...}`` plus the solver's diagnostics:
        ``value``/``lower`` (bracket of E*_K) for ``minimax``; ``tau``, ``objective``,
        ``lower``, ``gap`` for ``aqp``; and, for ``minimax``, ``float64_pweighted_bias``: the
        p-weighted bias of the float64 table itself, which departs from ``value`` once rounding
        its ~10^(K/4) entries matters (K ≳ 48).
    """
    K = _check_K(K)
    start = time.perf_counter()
    entry = _BUILDERS[name](K, **_resolve(name, options))
    entry["build_s"] = time.perf_counter() - start
    if name == "minimax":
        entry["float64_pweighted_bias"] = p_weighted_sup_bias(entry["table"])
    return entry


def _entry(name: str, K: int, options: dict) -> dict:
    options = _resolve(name, options)
    if name not in _SOLVED:
        return _BUILDERS[name](K, **options)
    key = _key(name, K, options)
    if key in _MEMORY:
        return _MEMORY[key]
    entry = None
    if key in _shipped():
        entry = _from_json(_shipped()[key], K)
    path = cache_dir() / f"{key}.json"
    if entry is None and path.is_file():
        try:
            entry = _from_json(json.loads(path.read_text()), K)
        except (OSError, ValueError, KeyError, TypeError):
            warnings.warn(f"rebuilding unreadable estimator cache file {path}", stacklevel=3)
    if entry is None:
        entry = build(name, K, **options)
        try:
            _write_atomic(path, json.dumps(_to_json(entry)))
        except OSError as err:
            warnings.warn(f"could not cache estimator table at {path}: {err}", stacklevel=3)
    _MEMORY[key] = entry
    return entry


def info(name: str, K: int, **options) -> dict:
    """The cached solver diagnostics of a table (see :func:`build`); a copy."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v)
            for k, v in _entry(name, _check_K(K), options).items()}


def table(name: str, K: int, **options) -> np.ndarray:
    """Estimator table g [K] with g[k-1] the reward for an answer seen k times among K rollouts.

    Args:
        name: one of ``plugin``, ``loo_plugin`` (option ``a`` = ½), ``digamma``, ``ustat``
            (option ``m``, required, 0 ≤ m ≤ K−1), ``minimax``, ``aqp`` (options ``eps`` = 2.0,
            ``monotone`` = False).
        K: rollouts per prompt, ≥ 2.

    Returns:
        A fresh float64 array of length K. ``minimax``/``aqp`` come from the shipped file, the
        disk cache or a solve (then cached), in that order.

    Raises:
        ValueError: unknown name (closest suggested), K < 2, m > K−1, or an infeasible aqp.
        TypeError: an option the estimator does not take.
    """
    K = _check_K(K)
    entry = _entry(name, K, options)
    if name == "minimax" and abs(entry["float64_pweighted_bias"] - entry["value"]) > 0.01 * entry["value"]:
        warnings.warn(f"the float64 minimax table at K={K} has entries up to "
                      f"{np.max(np.abs(entry['table'])):.1e}; rounding them moves its p-weighted "
                      f"bias from {entry['value']:.3g} to {entry['float64_pweighted_bias']:.3g} "
                      "(use aqp, or minimax_value(K) for E*_K)", RuntimeWarning, stacklevel=2)
    return entry["table"].copy()


def build_shipped(path: Path = SHIPPED_PATH, Ks=SHIPPED_K) -> dict:
    """Solve ``minimax`` and default ``aqp`` for each K and write them to ``path`` (JSON)."""
    tables = {}
    for K in Ks:
        for name in _SOLVED:
            options = _resolve(name, {})
            entry = build(name, K)
            _MEMORY[_key(name, K, options)] = entry  # aqp at this K needs E*_K from this solve
            tables[_key(name, K, options)] = _to_json(entry)
            print(f"{name:8s} K={K:3d}  built in {entry['build_s']:.2f} s", flush=True)
    _write_atomic(Path(path), json.dumps({"solver_version": SOLVER_VERSION, "tables": tables}, indent=1))
    return tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prefzoo.envs.estimators",
                                     description="Regenerate the shipped minimax/aqp estimator tables.")
    parser.add_argument("--build", action="store_true", required=True,
                        help=f"solve minimax and aqp for K in {SHIPPED_K} and write the shipped file")
    parser.add_argument("--out", default=str(SHIPPED_PATH), help="output JSON (default: the packaged file)")
    args = parser.parse_args(argv)
    global _SHIPPED
    _SHIPPED = {}  # never read the file being regenerated
    build_shipped(Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
