"""prefzoo: Gymnasium environments and an algorithm zoo for preference games.

``import prefzoo`` registers every ``prefzoo/…`` environment with Gymnasium.
"""

from prefzoo import envs  # noqa: F401  (registers the environments)
from prefzoo.algorithms import ALGORITHMS, make_algo
from prefzoo.envs import ENV_IDS, PreferenceGame, make_game

__version__ = "0.1.0"
__all__ = ["ALGORITHMS", "ENV_IDS", "PreferenceGame", "make_algo", "make_game", "__version__"]
