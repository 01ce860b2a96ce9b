"""prefzoo environments: preference games, exact oracles and Gymnasium envs.

Importing this package registers every ``prefzoo/`` environment id.
"""

from gymnasium.envs.registration import register, registry

from .answer import AnswerGame, AnswerGameEnv, make_answer_game
from .bandit import PrefBanditEnv, PrefBanditVectorEnv
from .game import FAMILIES, PreferenceGame, make_game
from .oracle import PreferenceOracle
from .token import TokenGame, TokenOracle, make_token_game
from .token_env import TokenGameEnv

__all__ = ["FAMILIES", "PreferenceOracle", "PreferenceGame", "PrefBanditEnv", "PrefBanditVectorEnv", "make_game",
           "ENV_IDS", "TokenGame", "TokenOracle", "TokenGameEnv", "make_token_game", "AnswerGame", "AnswerGameEnv",
           "make_answer_game"]


def _register(env_id: str, entry_point: str, vector_entry_point: str | None = None, **kwargs) -> None:
    if env_id not in registry:
        register(env_id, entry_point=entry_point, vector_entry_point=vector_entry_point,
                 disable_env_checker=False, kwargs=kwargs)


# ---- contextual dueling bandits -------------------------------------------------------
_BANDIT = "prefzoo.envs.bandit:PrefBanditEnv"
_BANDIT_VEC = "prefzoo.envs.bandit:PrefBanditVectorEnv"
_register("prefzoo/PrefBandit-v0", _BANDIT, _BANDIT_VEC, family="bt")
_register("prefzoo/PrefBandit-Cyclic-v0", _BANDIT, _BANDIT_VEC, family="cyclic")
_register("prefzoo/PrefBandit-Mixed-v0", _BANDIT, _BANDIT_VEC, family="mixed")
_register("prefzoo/PrefBandit-RewardOrder-v0", _BANDIT, _BANDIT_VEC, family="reward_order")

# ---- token-level LM alignment games ---------------------------------------------------
_TOKEN = "prefzoo.envs.token_env:TokenGameEnv"
_register("prefzoo/TokenGame-v0", _TOKEN, family="bt")
_register("prefzoo/TokenGame-Cyclic-v0", _TOKEN, family="cyclic")

# ---- answer-level (ALFT) games --------------------------------------------------------
_register("prefzoo/AnswerGame-v0", "prefzoo.envs.answer:AnswerGameEnv")

# ---- real language models (Hugging Face; optional extra [lm]) --------------------------
_register("prefzoo/LMGame-v0", "prefzoo.envs.lm.env:LMGameEnv")

ENV_IDS = tuple(env_id for env_id in registry if env_id.startswith("prefzoo/"))
