"""Metric names (design §6): the TensorBoard tags and CSV columns every run logs.

One place for each name: algorithms, the runner, ``compare``, the plots and the tests import these
constants instead of writing the strings. ``game/`` keys are exact ground truth (only games with
exact services log them); ``lm/`` keys are estimates on games without them.
"""

# exact ground truth
EXPLOITABILITY = "game/exploitability"
REG_EXPLOITABILITY = "game/reg_exploitability"
KL_TO_REF = "game/kl_to_ref"
KL_TO_TARGET = "game/kl_to_target"
WIN_RATE_VS_REF = "game/win_rate_vs_ref"
WIN_RATE_VS_NASH = "game/win_rate_vs_nash"
AVG_EXPLOITABILITY = "game/avg_exploitability"
ALFT_OBJECTIVE = "alft/objective"
ALFT_KL_TO_TARGET = "alft/kl_answer_to_target"

# estimates on games without exact services
LM_WIN_RATE_VS_REF = "lm/win_rate_vs_ref"
LM_WIN_RATE_VS_REF_SE = "lm/win_rate_vs_ref_se"
LM_KL_TO_REF = "lm/kl_to_ref"
LM_SCORE = "lm/score"
LM_LENGTH = "lm/length"
LM_DISTINCT2 = "lm/distinct2"
LM_ORACLE_CALLS = "lm/oracle_calls"  # evaluations of the reward model / score function / judge (cumulative)
LM_ORACLE_CACHE_HITS = "lm/oracle_cache_hits"  # oracle answers served from its cache (cumulative)

# dueling-bandit regret of the compared pairs
DUEL_WEAK_REGRET = "duel/weak_regret"
DUEL_STRONG_REGRET = "duel/strong_regret"

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
