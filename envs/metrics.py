"""Metric names (design §6) and their metadata: the TensorBoard tags and CSV columns every run logs.

One place for each name: algorithms, the runner, ``compare``, the plots and the tests import these
constants instead of writing the strings. ``game/`` keys are exact ground truth (only games with
exact services log them); ``est/`` keys are estimates on games without them; ``lm/`` keys are what
only language models have. :data:`METRICS` holds how each is shown (label, axis, table, plot) and
which way is better; ``compare``, the plots, ``tune`` and ``benchmark`` read it.
"""

from __future__ import annotations

from dataclasses import dataclass

# exact ground truth
EXPLOITABILITY = "game/exploitability"
REG_EXPLOITABILITY = "game/reg_exploitability"
KL_TO_REF = "game/kl_to_ref"
KL_TO_TARGET = "game/kl_to_target"
WIN_RATE_VS_REF = "game/win_rate_vs_ref"
WIN_RATE_VS_NASH = "game/win_rate_vs_nash"
AVG_EXPLOITABILITY = "game/avg_exploitability"
ANSWER_KL_TO_TARGET = "game/answer_kl_to_target"  # KL(ν_target ‖ ν_π) of answer marginals (AnswerTokenGame)
ALFT_OBJECTIVE = "alft/objective"
ALFT_KL_TO_TARGET = "alft/kl_answer_to_target"

# estimates on games without exact services
EST_WIN_RATE_VS_REF = "est/win_rate_vs_ref"
EST_WIN_RATE_VS_REF_SE = "est/win_rate_vs_ref_se"
EST_KL_TO_REF = "est/kl_to_ref"
EST_KL_TO_REF_SE = "est/kl_to_ref_se"
EST_EXPLOITABILITY = "est/exploitability"  # the plug-in exploitability of a neural policy of AnswerTokenGame
EST_EXPLOITABILITY_SE = "est/exploitability_se"
EST_KL_TO_TARGET = "est/kl_to_target"  # KL(π_target ‖ π) by Monte Carlo (a neural policy of AnswerTokenGame)
EST_KL_TO_TARGET_SE = "est/kl_to_target_se"

# what only language models have
LM_SCORE = "lm/score"
LM_LENGTH = "lm/length"
LM_DISTINCT2 = "lm/distinct2"
LM_ORACLE_CALLS = "lm/oracle_calls"  # evaluations of the reward model / score function / judge (cumulative)
LM_ORACLE_CACHE_HITS = "lm/oracle_cache_hits"  # oracle answers served from its cache (cumulative)

# dueling-bandit regret of the compared pairs
DUEL_WEAK_REGRET = "duel/weak_regret"  # Condorcet regrets: over contexts with a Condorcet winner only
DUEL_AVERAGE_REGRET = "duel/average_regret"  # (ε(y) + ε(y'))/2, RUCB's r_t (Yue et al.'s strong regret is the sum)
DUEL_COPELAND_REGRET = "duel/copeland_regret"  # every context (Zoghi et al. 2015)

# costs, time and training diagnostics
QUERIES = "cost/queries"
SAMPLES = "cost/samples"
WALL_S = "time/wall_s"
TOKENS_PER_S = "time/tokens_per_s"  # generated tokens per second (held-out sampling)
ITERATIONS = "time/iterations"
LOSS = "train/loss"
ETA = "train/eta"
REWARD_MEAN = "train/reward_mean"
REWARD_STD = "train/reward_std"


@dataclass(frozen=True)
class Metric:
    """How a metric is shown and judged.

    Args:
        label: axis label.
        best: its ideal value (0 for a distance or an exploitability, 1 for a win rate; None: no
            ideal). ``tune`` minimizes the distance to it, ``benchmark`` normalizes by it
            (:func:`shortfall`).
        log_axis: plotted on a log axis (distances to 0); False for estimates that start at ½ or 0
            and may dip below.
        in_table: a row of ``compare``'s table.
        in_plot: a panel of ``compare``'s plots.
    """

    label: str
    best: float | None = 0.0
    log_axis: bool = True
    in_table: bool = True
    in_plot: bool = True


# in the order of compare's table and plots
METRICS: dict[str, Metric] = {
    EXPLOITABILITY: Metric("exploitability  max_y P(y≻π) − ½"),
    AVG_EXPLOITABILITY: Metric("exploitability of the average iterate"),
    KL_TO_TARGET: Metric("KL(π_target ‖ π)"),
    REG_EXPLOITABILITY: Metric("regularized exploitability", in_table=False, in_plot=False),
    ANSWER_KL_TO_TARGET: Metric("KL(ν_target ‖ ν_π) over answers"),
    WIN_RATE_VS_REF: Metric("win rate vs π_ref", best=1.0, log_axis=False, in_plot=False),
    ALFT_KL_TO_TARGET: Metric("KL(ν* ‖ ν_π) over answers"),
    ALFT_OBJECTIVE: Metric("ALFT objective F(ν_π)", best=None, log_axis=False, in_plot=False),
    EST_WIN_RATE_VS_REF: Metric("win rate vs π_ref (estimated)", best=1.0, log_axis=False),
    EST_KL_TO_REF: Metric("KL(π ‖ π_ref) (estimated)", log_axis=False),
    EST_KL_TO_TARGET: Metric("KL(π_target ‖ π) (estimated)", log_axis=False),
    EST_EXPLOITABILITY: Metric("exploitability (estimated)", log_axis=False),
    LM_SCORE: Metric("oracle score", best=None, log_axis=False, in_plot=False),
    WALL_S: Metric("wall time (s)", best=None, log_axis=False, in_plot=False),
}
TABLE_METRICS = tuple(key for key, metric in METRICS.items() if metric.in_table)
PLOT_METRICS = tuple(key for key, metric in METRICS.items() if metric.in_plot)


def shortfall(key: str, value):
    """|value − best| of metric ``key`` (arrays too): how far a run is from the metric's ideal.

    Raises:
        ValueError: the metric has no ideal value (``best`` None) or is not in :data:`METRICS`.
    """
    best = METRICS[key].best if key in METRICS else None
    if best is None:
        raise ValueError(f"metric {key!r} has no ideal value to measure a distance to; use one of "
                         f"{[k for k, m in METRICS.items() if m.best is not None]}")
    return abs(value - best)
