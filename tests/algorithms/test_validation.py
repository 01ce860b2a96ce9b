"""Every hyperparameter is validated at construction, naming itself (issue 13 items 10 and 12,
and the property-style test over every registered algorithm and bandit env)."""

import inspect
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import prefzoo
from prefzoo.algorithms.checkpoint import CHECKPOINT_FORMAT
from prefzoo.envs.game import make_game

ANSWER_SMALL = {"n_contexts": 3, "vocab_size": 4, "max_length": 3, "n_answers": 4, "ref_fit_steps": 5}
BANDIT_SMALL = {"n_contexts": 4, "n_actions": 3}
NOT_NUMBERS = ("env", "self")


@pytest.fixture(scope="module")
def envs():
    return {"bandit": gym.make("prefzoo/PrefBandit-Cyclic-v0", **BANDIT_SMALL),
            "answer": gym.make("prefzoo/AnswerGame-v0", **ANSWER_SMALL)}


def env_for(name, envs):
    return envs["answer" if prefzoo.ALGORITHMS[name].supported_payoffs == ("answer_utility",) else "bandit"]


def parameters(cls):
    """(name, default) of the constructor's keyword arguments."""
    return [(k, p.default) for k, p in inspect.signature(cls.__init__).parameters.items() if k not in NOT_NUMBERS]


def bad_values(default):
    """Values a parameter with this default must refuse: NaN, ±inf, negative, wrong type, and a
    float for an integer. (Zero is valid for some parameters; it is checked separately.)"""
    if isinstance(default, bool) or default is None:
        return [123, "yes"] if default is None else [2.5, "yes"]
    if isinstance(default, int):
        return [math.nan, math.inf, -1, 2.5, "3", [3]]
    if isinstance(default, float):
        return [math.nan, math.inf, -math.inf, -1.0, "0.1", [0.1]]
    return [123, "no-such-choice", None]  # a string choice


CASES = [(name, param, value) for name, cls in sorted(prefzoo.ALGORITHMS.items())
         for param, default in parameters(cls) for value in bad_values(default)]


@pytest.mark.parametrize("name,param,value", CASES, ids=[f"{n}-{p}-{v!r}" for n, p, v in CASES])
def test_every_algorithm_refuses_bad_hyperparameters_naming_them(name, param, value, envs):
    with pytest.raises((ValueError, TypeError), match=param) as info:
        prefzoo.make_algo(name, env_for(name, envs), **{param: value})
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("name", sorted(prefzoo.ALGORITHMS))
def test_zero_either_builds_or_is_refused_naming_the_parameter(name, envs):
    for param, default in parameters(prefzoo.ALGORITHMS[name]):
        if isinstance(default, bool) or not isinstance(default, (int, float)) or param == "seed":
            continue
        try:
            algo = prefzoo.make_algo(name, env_for(name, envs), **{param: 0})
        except (ValueError, TypeError) as err:
            assert param in str(err), (param, err)
        else:
            assert isinstance(algo, prefzoo.ALGORITHMS[name])


def test_issue_examples(envs):
    env = envs["bandit"]
    with pytest.raises(ValueError, match=r"grad_steps must be an integer >= 1, got 0\.5"):
        prefzoo.make_algo("wind", env, grad_steps=0.5)
    for hp in ("lr", "beta", "eta"):
        with pytest.raises(ValueError, match=rf"{hp} must be a finite number .*, got nan"):
            prefzoo.make_algo("wind", env, **{hp: float("nan")})
    with pytest.raises(ValueError, match=r"eta must be <= 1/beta = 10 \(the step needs eta\*beta <= 1\), "
                                         r"got eta=20"):
        prefzoo.make_algo("wind", env, beta=0.1, eta=20.0)  # WIND's step needs eta*beta <= 1
    algo = prefzoo.make_algo("sppo", env)
    with pytest.raises(ValueError, match=r"eval_freq must be an integer >= 1, got 0"):
        algo.learn(5, eval_freq=0)
    with pytest.raises(ValueError, match=r"iterations must be an integer >= 0, got 2\.5"):
        algo.learn(2.5)
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        prefzoo.make_algo("wind", env, device="tpu")
    with pytest.raises(ValueError, match=r"unknown policy 'tabluar' \(did you mean 'tabular'\?\)"):
        prefzoo.make_algo("wind", env, policy="tabluar")  # exact mode too (it was ignored there)
    with pytest.raises(ValueError, match=r"unknown algorithm 'wnd' \(did you mean 'wind'\?\)"):
        prefzoo.make_algo("wnd", env)


# ---------------------------------------------------------------------- envs and games
GAME_PARAMS = [(k, 0 if k == "seed" else 1.0 if p.default is None else p.default)  # None: a float or int default
               for k, p in inspect.signature(make_game).parameters.items() if k not in ("family", "uniform_rho")]
ENV_CASES = [(env_id, param, value) for env_id in prefzoo.ENV_IDS if env_id.startswith("prefzoo/PrefBandit")
             for param, default in GAME_PARAMS for value in bad_values(default)]


@pytest.mark.parametrize("env_id,param,value", ENV_CASES, ids=[f"{e[8:]}-{p}-{v!r}" for e, p, v in ENV_CASES])
def test_every_bandit_env_refuses_bad_game_arguments_naming_them(env_id, param, value):
    with pytest.raises((ValueError, TypeError), match=param):
        gym.make(env_id, **{**BANDIT_SMALL, param: value})


@pytest.mark.parametrize("kwargs,match", [
    ({"reward_mode": "winprob"}, r"unknown reward_mode 'winprob' \(did you mean 'win_prob'\?\)"),
    ({"family": 3}, "unknown family 3"),
    ({"n_actions": 1}, r"n_actions must be an integer >= 2, got 1"),
    ({"num_envs": 0}, r"num_envs must be an integer >= 1, got 0"),
    ({"num_envs": 2.5}, r"num_envs must be an integer >= 1, got 2\.5"),
])
def test_env_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        if "num_envs" in kwargs:
            gym.make_vec("prefzoo/PrefBandit-v0", vectorization_mode="vector_entry_point", **kwargs)
        else:
            gym.make("prefzoo/PrefBandit-v0", **kwargs)


# ---------------------------------------------------------------------- item 12
def test_iterative_bon_kl_to_target_is_finite_at_its_target_with_huge_reward_scale():
    """reward_scale=1e6 makes P exactly 0/1: dominated responses shrink doubly exponentially, the
    policy underflows where the fixed-point iteration stopped at 3e-26 (kl_to_target was inf)."""
    for env_id in ("prefzoo/PrefBandit-v0", "prefzoo/PrefBandit-Cyclic-v0"):
        algo = prefzoo.make_algo("iterative_bon", gym.make(env_id, reward_scale=1e6)).learn(300)
        metrics = algo.evaluate()
        assert 0 <= metrics["game/kl_to_target"] < 1e-12
        target = algo.target_policy()
        assert np.abs(target - algo.policy_probs()).max() < 1e-9  # it is at its target
        # an independent check of the KL: direct sum over the target's support, π from log π
        log_pi = algo.policy_log_probs()
        support = target > 0
        direct = float(algo.game.rho @ np.where(support, target * (np.log(np.where(support, target, 1)) - log_pi), 0)
                       .sum(1))
        assert metrics["game/kl_to_target"] == pytest.approx(direct, abs=1e-15)


def test_kl_metrics_match_a_direct_sum_on_an_ordinary_game():
    algo = prefzoo.make_algo("iterative_bon", gym.make("prefzoo/PrefBandit-Cyclic-v0")).learn(10)
    metrics, pi, game = algo.evaluate(), algo.policy_probs(), algo.game
    target = algo.target_policy()
    assert metrics["game/kl_to_ref"] == pytest.approx(float(game.rho @ (pi * np.log(pi / game.ref)).sum(1)), rel=1e-9)
    assert metrics["game/kl_to_target"] == pytest.approx(
        float(game.rho @ (target * np.log(target / pi)).sum(1)), rel=1e-6)


@pytest.mark.parametrize("name", sorted(prefzoo.ALGORITHMS))
def test_checkpoints_are_data_only(name, envs, tmp_path):
    """Item 1: every algorithm's checkpoint loads with plain torch.load(weights_only=True)."""
    algo = prefzoo.make_algo(name, env_for(name, envs), **({"mode": "sample"} if "sample" in
                                                           prefzoo.ALGORITHMS[name].supported_modes else {}))
    algo.save(tmp_path / "a.pt")
    data = torch.load(tmp_path / "a.pt", weights_only=True)
    assert data["format"] == CHECKPOINT_FORMAT and data["state"]["class"] == type(algo).__name__
