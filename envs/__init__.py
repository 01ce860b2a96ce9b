"""prefzoo environments: preference games, exact oracles and Gymnasium envs.

Importing this package registers every ``prefzoo/`` environment id.
"""

import importlib

import gymnasium as gym
from gymnasium.envs.registration import register, registry

from .answer import AnswerGame, AnswerGameEnv, make_answer_game
from .bandit import PrefBanditEnv, PrefBanditVectorEnv
from .checks import check_choice
from .game import FAMILIES, PreferenceGame, import_game_class, make_game
from .oracle import PreferenceOracle
from .token import TokenGame, TokenOracle, make_token_game
from .token_env import TokenGameEnv

__all__ = ["FAMILIES", "PreferenceOracle", "PreferenceGame", "PrefBanditEnv", "PrefBanditVectorEnv", "make_game",
           "ENV_IDS", "register_game", "game_class", "registering_modules", "TokenGame", "TokenOracle", "TokenGameEnv",
           "make_token_game",
           "AnswerGame", "AnswerGameEnv", "make_answer_game"]


GAME_CLASSES: dict[str, str] = {}  # env id -> "module:Class" of the game it holds with its default arguments
LISTED_ENV = "prefzoo.envs.bandit:PrefBanditEnv"  # plays any game of indexed, listed responses
LISTED_VECTOR_ENV = "prefzoo.envs.bandit:PrefBanditVectorEnv"


def register_game(env_id: str, entry_point: str | None = None, vector_entry_point: str | None = None, *,
                  game: str, **kwargs) -> None:
    """Register ``env_id`` with Gymnasium (``entry_point`` "module:EnvClass", default ``kwargs``) and
    the class of the game it holds (``game``, "module:GameClass"), so that tools read the game's
    declarations without building it. A second registration of an id is ignored.

    With no ``entry_point`` the game needs no env of its own: a game of indexed, listed responses
    is played in the contextual dueling bandit env (:data:`LISTED_ENV`, with its vector env), which
    builds it as ``GameClass(**kwargs)`` (``gym.make`` kwargs added)."""
    GAME_CLASSES[env_id] = game
    if entry_point is None:
        entry_point, vector_entry_point, kwargs = LISTED_ENV, LISTED_VECTOR_ENV, {"game": game, **kwargs}
    if env_id not in registry:
        register(env_id, entry_point=entry_point, vector_entry_point=vector_entry_point,
                 disable_env_checker=False, kwargs=kwargs)


def registering_modules(env_ids) -> tuple[str, ...]:
    """The modules a fresh process imports so that ``env_ids`` are registered there (a worker of
    ``compare`` or ``tune``): for an id registered outside prefzoo, the module of its game class,
    where its ``register_game`` line is expected to live. Read from this process's registry, never
    from a file: a stored config names no module to import."""
    modules = (GAME_CLASSES[env_id].partition(":")[0] for env_id in env_ids if env_id in GAME_CLASSES)
    return tuple(dict.fromkeys(m for m in modules if not m.startswith("prefzoo.")))


def import_modules(modules) -> None:
    """Import ``modules`` (:func:`registering_modules` of the parent process)."""
    for module in modules:
        importlib.import_module(module)


def game_class(env_id: str) -> type:
    """The class of the game ``env_id`` holds with its default arguments, imported without building
    a game; its declarations (:func:`~prefzoo.envs.oracle.declarations`) and ``headline`` are class
    attributes. (Arguments may change it: a token game above the dense-P limit is a TokenOracle.)
    An id registered with Gymnasium alone is built once to find it."""
    if env_id not in GAME_CLASSES:
        check_choice("env id", env_id, list(registry))
        return type(gym.make(env_id).unwrapped.game)
    return import_game_class(GAME_CLASSES[env_id])


# ---- contextual dueling bandits -------------------------------------------------------
_BANDIT_GAME = "prefzoo.envs.game:PreferenceGame"
register_game("prefzoo/PrefBandit-v0", LISTED_ENV, LISTED_VECTOR_ENV, game=_BANDIT_GAME, family="bt")
register_game("prefzoo/PrefBandit-Cyclic-v0", LISTED_ENV, LISTED_VECTOR_ENV, game=_BANDIT_GAME, family="cyclic")
register_game("prefzoo/PrefBandit-Mixed-v0", LISTED_ENV, LISTED_VECTOR_ENV, game=_BANDIT_GAME, family="mixed")
register_game("prefzoo/PrefBandit-RewardOrder-v0", LISTED_ENV, LISTED_VECTOR_ENV, game=_BANDIT_GAME,
              family="reward_order")

# ---- token-level LM alignment games ---------------------------------------------------
_TOKEN = "prefzoo.envs.token_env:TokenGameEnv"
_TOKEN_GAME = "prefzoo.envs.token:TokenGame"
register_game("prefzoo/TokenGame-v0", _TOKEN, game=_TOKEN_GAME, family="bt")
register_game("prefzoo/TokenGame-Cyclic-v0", _TOKEN, game=_TOKEN_GAME, family="cyclic")

# ---- token games exact at any size (finite-state π_ref, preference through the answer) --
register_game("prefzoo/AnswerTokenGame-v0", "prefzoo.envs.answer_token:AnswerTokenGameEnv",
              game="prefzoo.envs.answer_token:AnswerTokenGame")

# ---- answer-level (ALFT) games --------------------------------------------------------
register_game("prefzoo/AnswerGame-v0", "prefzoo.envs.answer:AnswerGameEnv", game="prefzoo.envs.answer:AnswerGame")

# ---- real language models (Hugging Face; optional extra [lm]) --------------------------
register_game("prefzoo/LMGame-v0", "prefzoo.envs.lm.env:LMGameEnv", game="prefzoo.envs.lm.game:LMGame")

ENV_IDS = tuple(env_id for env_id in registry if env_id.startswith("prefzoo/"))
