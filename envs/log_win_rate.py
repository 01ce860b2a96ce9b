"""The log-win-rate game of iterative Best-of-N (Faster WIND, Theorem 1) and its exploitability.

Paper: Yang et al. (2025), Faster WIND, arXiv:2410.20727, eq. (log-win-rate game) and Theorem 1.

**The game.** A symmetric two-player game on policies; against an opponent π', a player using π
gets, per context x,

    u_β(π; π') = E_{y∼π}[log w(y; π')] − β·KL(π ‖ π_ref),

where w(y; π') is the win rate of y against π' (below). (π, π) is a Nash equilibrium when π is a
best response to itself. With mixing α and N samples, Theorem 1 says the limit of iterative BoN,
π_{t+1} ∝ π_ref^α·BoN_N(π_t)^{1−α}, is such an equilibrium for β = α/((1−α)(N−1)), and for
β = 0 when α = 0.

**Best response and exploitability, closed form.** For β > 0 the best response to π' is the Gibbs
policy BR ∝ π_ref·w(·; π')^{1/β} and max_σ u_β(σ; π') = β·log Σ_y π_ref(y)·w(y; π')^{1/β}
(Gibbs variational principle). Hence the exploitability of the symmetric profile (π, π)

    e_β(π) = E_x[ β·log Σ_y π_ref(y)·w(y; π)^{1/β} + β·KL(π ‖ π_ref) − Σ_y π(y)·log w(y; π) ] ≥ 0,

and e_β(π) = 0 exactly when π ∝ π_ref·w(·; π)^{1/β} (the Nash condition; substitute log π =
log π_ref + log w/β − log Z and the three terms cancel). For β = 0:
e_0(π) = E_x[max_y log w(y; π) − E_{y∼π} log w(y; π)], 0 exactly when π is supported on
maximizers of w(·; π). e is finite: w(y; π) ≥ F(y)/N^{1/(N−1)} ≥ π(y)/N^{1/(N−1)} > 0 wherever
π(y) > 0 (a response ties with itself).

**Which win rate** (``ties``). Ties are the pairs with P(y≻y') = ½ exactly: always y' = y (a
response ties with itself), and on reward-order games 1{r > r'} + ½·1{r = r'} the equal-reward
pairs. With T = 1{P = ½}, the strict and tie-inclusive win rates are
F⁻(y) = P(y≻π) − ½·(Tπ)(y) and F(y) = P(y⪰π) = P(y≻π) + ½·(Tπ)(y) (on a reward order these are
P_{y'∼π}(r(y') < r(y)) and P_{y'∼π}(r(y') ≤ r(y)), the CDF of the reward under π).

- ``"inclusive"``: w = P(y⪰π') = F, the payoff as the paper writes it. The theorem's BoN law
  BoN_N(π)(y) = N·π(y)·P(y⪰π)^{N−1} is the continuous-response form (no response carries
  probability mass); on a finite response set it is off by the atoms, so the exact iterative-BoN
  limit is only approximately an equilibrium of this game (the gap shrinks as max π(y) → 0).
- ``"uniform"`` (default): ties, y's own atom included, are broken by an independent uniform
  draw, i.e. y's reward quantile is u ∼ Uniform[F⁻(y), F(y)], and
  w_N(y) = (E[u^{N−1}])^{1/(N−1)} = ((F^N − F⁻^N)/(N·(F − F⁻)))^{1/(N−1)} (a power mean).
  Then the exact Best-of-N law with ties split in proportion to π is BoN_N(π) = N·π·w_N^{N−1}
  *identically*, so Theorem 1 holds exactly on finite games: a fixed point of the mixed iteration,
  π ∝ π_ref·(BoN_N(π)/π)^{(1−α)/α} = π_ref·N^{…}·w_N^{(N−1)(1−α)/α}, is π ∝ π_ref·w_N^{1/β} with
  β = α/((1−α)(N−1)). For N = 2, w_2 = (F + F⁻)/2 = P(y≻π): defined for *any* P, transitive or
  not. w_N → F (``"inclusive"``) as the atoms vanish.

Scope: for N > 2 the game needs the reward-order form (F, F⁻ of an order, P ∈ {0, ½, 1}); on a
stochastic or intransitive P the N-sample law depends on how the winner of N is chosen (e.g. a
comparison tournament), which P alone does not fix, so :func:`log_win_rates` refuses it.
On intransitive P with N = 2 the game is defined, but the theorem's other half (the iteration
converges) can fail: with small α the iteration cycles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logsumexp, rel_entr

TIES = ("uniform", "inclusive")
_TIE_ATOL = 1e-12


def bon_beta(mixing: float, n: int) -> float:
    """Theorem 1's map from iterative BoN's mixing α and N to the game's β = α/((1−α)(N−1))."""
    return mixing / ((1 - mixing) * (n - 1))


def bon_mixing(beta: float, n: int) -> float:
    """The inverse of :func:`bon_beta`: the mixing α = β(N−1)/(1+β(N−1)) that targets β."""
    return beta * (n - 1) / (1 + beta * (n - 1))


def is_order(P: np.ndarray) -> bool:
    """True when every entry of P is 0, ½ or 1 (a reward order with ties)."""
    P = np.asarray(P)
    return bool(np.all((P == 0) | (P == 1) | (np.abs(P - 0.5) <= _TIE_ATOL)))


def quantiles(P: np.ndarray, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F⁻, F): strict and tie-inclusive win rates of every response against π, each [X, Y].

    F⁻ = P(y≻π) − ½·(Tπ), F = P(y⪰π) = P(y≻π) + ½·(Tπ), T = 1{P = ½} (the diagonal included).
    """
    P, pi = np.asarray(P, dtype=np.float64), np.asarray(pi, dtype=np.float64)
    mid = np.einsum("xij,xj->xi", P, pi)
    half = 0.5 * np.einsum("xij,xj->xi", (np.abs(P - 0.5) <= _TIE_ATOL).astype(np.float64), pi)
    return np.clip(mid - half, 0.0, 1.0), np.clip(mid + half, 0.0, 1.0)


def log_win_rates(P: np.ndarray, pi: np.ndarray, n: int = 2, ties: str = "uniform") -> np.ndarray:
    """log w(y; π) for every response, [X, Y] (−inf where w = 0).

    ``"inclusive"``: log P(y⪰π). ``"uniform"``: log w_N with
    log w_N = log F + log((Σ_{j<N} q^j)/N)/(N−1), q = F⁻/F (the power mean, evaluated without
    underflow for tiny F).

    Raises:
        ValueError: an unknown ``ties``, N < 2, or N > 2 on a P that is not a reward order.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    n = int(n)
    if ties == "uniform" and n > 2 and not is_order(P):
        raise ValueError("the N > 2 log-win-rate game needs a reward order (P in {0, 1/2, 1}); on a "
                         "stochastic P the N-sample law depends on the selection tournament. Use n=2 "
                         "(defined for any P) or a reward-order game")
    f_minus, f = quantiles(P, pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_f = np.log(f)
        if ties == "inclusive":
            return log_f
        q = np.where(f > 0, f_minus / np.where(f > 0, f, 1.0), 0.0)
        mean = sum(q**j for j in range(n)) / n
        return np.where(f > 0, log_f + np.log(mean) / (n - 1), -np.inf)


def _own(pi: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """Σ_y π(y)·log w(y) per context, with 0·log 0 = 0 (−inf if π(y) > 0 = w(y))."""
    with np.errstate(invalid="ignore"):
        return np.where(pi > 0, pi * log_w, 0.0).sum(axis=-1)


def payoff(P, ref, pi, opponent, beta: float = 0.0, n: int = 2, ties: str = "uniform") -> np.ndarray:
    """u_β(π; π') = E_{y∼π} log w(y; π') − β·KL(π‖π_ref), per context [X]."""
    reg = beta * rel_entr(pi, ref).sum(axis=-1) if beta > 0 else 0.0
    return _own(np.asarray(pi, float), log_win_rates(P, opponent, n, ties)) - reg


def best_response(P, ref, pi, beta: float = 0.0, n: int = 2, ties: str = "uniform") -> dict[str, Any]:
    """Best response to π and the values behind the exploitability, per context (OpenSpiel style).

    Returns a dict: ``policy`` [X, Y] (β > 0: π_ref·w^{1/β} normalized; β = 0: uniform over the
    maximizers of w within supp π_ref), ``br_value`` [X] (max_σ u_β(σ; π)), ``on_policy_value``
    [X] (u_β(π; π)) and ``gap`` [X] = br_value − on_policy_value ≥ 0.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    pi, ref = np.asarray(pi, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    log_w = log_win_rates(P, pi, n, ties)
    if beta > 0:
        logits = np.where(ref > 0, log_w / beta, -np.inf) + np.log(np.where(ref > 0, ref, 1.0))
        br_value = beta * logsumexp(logits, axis=-1)
        policy = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
    else:
        masked = np.where(ref > 0, log_w, -np.inf)
        br_value = masked.max(axis=-1)
        top = masked == br_value[:, None]
        policy = top / top.sum(axis=-1, keepdims=True)
    on_policy = payoff(P, ref, pi, pi, beta, n, ties)
    with np.errstate(invalid="ignore"):
        gap = np.where(np.isneginf(on_policy), np.inf, br_value - on_policy)
    return {"policy": policy, "br_value": br_value, "on_policy_value": on_policy, "gap": gap}


def exploitability(P, ref, rho, pi, beta: float = 0.0, n: int = 2, ties: str = "uniform") -> float:
    """ρ-weighted exploitability e_β(π) of (π, π) in the log-win-rate game (module docstring).

    Exactly 0 at a Nash equilibrium (up to rounding, ~1e-16), positive elsewhere.
    """
    gap = best_response(P, ref, pi, beta, n, ties)["gap"]
    return float(np.asarray(rho, dtype=np.float64) @ gap)
