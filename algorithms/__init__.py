"""prefzoo algorithms: one module per family, one interface (design §4).

``ALGORITHMS`` maps a name to its class; :func:`make_algo` builds one on an env id or a made env.
"""

from __future__ import annotations

import gymnasium as gym

from prefzoo.envs.checks import check_choice

from .aqp_alft import AQPALFT
from .base import Algorithm
from .dno import DNO
from .dueling import RUCB, DoubleTS
from .egpo import EGPO
from .estimate_then_solve import EstimateThenSolve
from .grpo import GRPO
from .inpo import INPO
from .iterative_bon import IterativeBoN
from .jbond import JBOND
from .mpo import MPO
from .nash_md import NashMD, NashMP
from .online_dpo import OnlineDPO, OnlineIPO
from .ppo import PPO
from .spo import SPO
from .sppo import SPPO
from .wind import WIND
from .xpo import XPO

ALGORITHMS: dict[str, type[Algorithm]] = {
    "wind": WIND,
    "iterative_bon": IterativeBoN,
    "jbond": JBOND,
    "sppo": SPPO,
    "nash_md": NashMD,
    "nash_mp": NashMP,
    "mpo": MPO,
    "inpo": INPO,
    "egpo": EGPO,
    "dno": DNO,
    "spo": SPO,
    "online_dpo": OnlineDPO,
    "online_ipo": OnlineIPO,
    "xpo": XPO,
    "grpo": GRPO,
    "ppo": PPO,
    "aqp_alft": AQPALFT,
    "estimate_then_solve": EstimateThenSolve,
    "rucb": RUCB,
    "double_ts": DoubleTS,
}


def make_algo(name: str, env: str | gym.Env, seed: int = 0, **hyperparams) -> Algorithm:
    """Build algorithm ``name`` on ``env`` (an id or a made env) with ``hyperparams``.

    Raises:
        ValueError: an unknown algorithm name (the closest valid name is suggested).
        TypeError: an unknown hyperparameter (constructors take explicit keywords only).
    """
    check_choice("algorithm", name, sorted(ALGORITHMS))
    return ALGORITHMS[name](env, seed=seed, **hyperparams)


__all__ = ["ALGORITHMS", "Algorithm", "make_algo"]
