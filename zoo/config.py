"""Hyperparameters: ``zoo_configs/<algo>.yml`` keyed by env id, then ``--hp key=value`` overrides.

Lookup order (rl-baselines3-zoo's ``read_hyperparameters``): the exact env id, then ``default``,
otherwise an error listing the known keys. Runner keys (:data:`RUNNER_KEYS`) are popped here; the
rest goes unchanged to :func:`prefzoo.make_algo`, after being checked against the algorithm
constructor's signature, so a misspelled key fails *before* anything is built. Values are parsed
with ``yaml.safe_load`` only (no ``eval``), bounded by :func:`safe_yaml`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.resources
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

import prefzoo
from prefzoo.algorithms import ALGORITHMS
from prefzoo.envs.checks import closest_hint, expanded_size
from prefzoo.envs.oracle import BUDGET_KEYWORD

RUNNER_KEYS = {"iterations": 300, "eval_freq": 1, "save_freq": 50, "env_kwargs": {}, "nproc": 1}
CONFIG_DIR_ENV = "PREFZOO_CONFIG_DIR"  # overrides the packaged zoo_configs/ (tests, experiments)
NOT_HYPERPARAMETERS = {"self", "env", "seed"}  # constructor arguments the runner fills itself


class ConfigError(ValueError):
    """A user-facing configuration mistake; the CLI prints its message without a traceback."""


def unknown(kind: str, name: str, valid) -> ConfigError:
    """``unknown <kind> 'name' (did you mean …?); valid: …`` as an exception to raise."""
    return ConfigError(f"unknown {kind} {name!r}{closest_hint(name, sorted(valid))}; valid: {', '.join(sorted(valid))}")


def int_at_least(low: int):
    """An argparse ``type``: an integer >= ``low`` (else argparse's usage error, exit code 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


def check_algo(name: str) -> type:
    if name not in ALGORITHMS:
        raise unknown("algorithm", name, ALGORITHMS)
    return ALGORITHMS[name]


def check_env(env_id: str) -> str:
    """``env_id`` when a preference game is registered under it in this process
    (:func:`~prefzoo.envs.register_game`; never imports anything: a config is data)."""
    if env_id in gym.registry and env_id not in prefzoo.envs.GAME_CLASSES:
        raise ConfigError(f"env id {env_id!r} is registered with Gymnasium but is not a preference game "
                          f"(prefzoo.envs.register_game registers one); preference games: {', '.join(prefzoo.ENV_IDS)}")
    if env_id not in gym.registry:
        raise unknown("env id", env_id, prefzoo.ENV_IDS)
    return env_id


def hyperparameter_names(algo: str) -> list[str]:
    """The keywords the algorithm's constructor accepts (no constructor takes ``**kwargs``)."""
    params = inspect.signature(check_algo(algo).__init__).parameters
    return [name for name in params if name not in NOT_HYPERPARAMETERS]


def check_hyperparameters(algo: str, hyperparams: dict[str, Any], source: str = "") -> None:
    valid = hyperparameter_names(algo)
    for name in hyperparams:
        if name not in valid:
            where = f" (from {source})" if source else ""
            raise unknown(f"hyperparameter for {algo}{where}", name, valid + list(RUNNER_KEYS))


def config_dir(override: str | os.PathLike | None = None) -> Path:
    """``override``, else ``$PREFZOO_CONFIG_DIR``, else the packaged ``prefzoo.zoo_configs``."""
    chosen = override or os.environ.get(CONFIG_DIR_ENV)
    if chosen:
        if not Path(chosen).is_dir():
            where = "--config-dir" if override else f"${CONFIG_DIR_ENV}"
            raise ConfigError(f"{where} {chosen!r} is not a directory (it should hold <algo>.yml files)")
        return Path(chosen)
    return Path(str(importlib.resources.files("prefzoo.zoo_configs")))


# YAML 1.1 (PyYAML) reads 1e-3 as a string: it wants a dot (1.0e-3); a user means a number
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)


MAX_YAML_NODES = 100_000  # a config's nodes once its aliases are expanded (configs hold a few hundred)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def safe_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)``, refused with a :class:`ConfigError` naming ``source`` when its aliases
    expand to more than :data:`MAX_YAML_NODES` nodes or recurse: the count is taken on the composed
    alias graph before any Python object is built (a few hundred bytes of nested aliases would
    otherwise expand to gigabytes)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = expanded_size(node, _yaml_children)
        except ValueError:
            raise ConfigError(f"{source}: a YAML alias refers to a node that contains it (a recursive "
                              "structure); refused") from None
        if size > MAX_YAML_NODES:
            raise ConfigError(f"{source}: its YAML aliases expand to {size:,} nodes (more than {MAX_YAML_NODES:,}); "
                              "refused before building it")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def as_numbers(value: Any) -> Any:
    """``value`` with every string that spells a number (``1e-3``, ``-2E5``, ``inf``, ``nan``)
    turned into that number, recursively; other values unchanged."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    if isinstance(value, dict):
        return {key: as_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_numbers(item) for item in value]
    return value


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a config file; a syntax error names the file and the line."""
    try:
        data = as_numbers(safe_yaml(path.read_text(), str(path)))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text YAML file (it is not valid UTF-8)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"malformed YAML in {path}{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) or v is None for v in data.values()):
        raise ConfigError(f"{path}: expected a mapping of env id (or 'default') to a mapping of hyperparameters")
    return {key: dict(value or {}) for key, value in data.items()}


def read_hyperparameters(algo: str, env_id: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """The YAML entry for ``env_id`` (exact id, then ``default``); ``{}`` when the algorithm has
    no config file (constructor defaults)."""
    check_algo(algo)
    path = config_dir(directory) / f"{algo}.yml"
    if not path.is_file():
        return {}
    entries = load_yaml(path)
    for key in (env_id, "default"):
        if key in entries:
            return dict(entries[key])
    raise ConfigError(f"{path} has no entry for {env_id!r} and no 'default'; known ids: {sorted(entries)}")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["beta=0.2", "env_kwargs={n_contexts: 4}"]`` → ``{"beta": 0.2, "env_kwargs": {...}}``."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad --hp override {pair!r}: expected key=value, e.g. beta=0.2")
        try:
            out[key.strip()] = as_numbers(safe_yaml(raw, f"--hp {key.strip()}"))
        except yaml.YAMLError as err:
            raise ConfigError(f"bad --hp override {pair!r}: value is not valid YAML ({err})") from None
    return out


@dataclasses.dataclass
class RunConfig:
    """Everything needed to (re)build a run; ``config.yml`` is this, sorted."""

    algo: str
    env_id: str
    seed: int = 0
    iterations: int = RUNNER_KEYS["iterations"]
    eval_freq: int = RUNNER_KEYS["eval_freq"]
    save_freq: int = RUNNER_KEYS["save_freq"]
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    hyperparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    nproc: int = RUNNER_KEYS["nproc"]  # training processes (prefzoo.zoo.distributed); 1: this process alone

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """A config from ``config.yml``'s mapping; unknown or missing keys are a :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"a run config is a mapping, got {type(data).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in fields:
                raise unknown("run config key", key, fields)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"run config lacks {', '.join(missing)}")
        return cls(**as_numbers(data))


def resolve(algo: str, env_id: str, seed: int = 0, overrides: dict[str, Any] | None = None,
            directory: str | os.PathLike | None = None, device: str | None = None) -> RunConfig:
    """YAML entry + overrides → a validated :class:`RunConfig` (runner keys split off).

    ``device`` (``--device``) is set as the ``device`` hyperparameter when the constructor
    accepts one; it overrides a ``device`` of the config file, and one in ``overrides`` (``--hp
    device=…``) that differs from it is an error (never silently dropped).
    """
    check_algo(algo)
    overrides = dict(overrides or {})
    if device is not None and "device" in overrides and overrides["device"] != device:
        raise ConfigError(f"device given twice: --device {device} and --hp device={overrides['device']}; pass one")
    hyperparams = {**read_hyperparameters(algo, env_id, directory), **overrides}
    runner = {key: hyperparams.pop(key, default) for key, default in RUNNER_KEYS.items()}
    if device is not None and "device" in hyperparameter_names(algo):
        hyperparams["device"] = device
    return validate(RunConfig(algo=algo, env_id=env_id, seed=seed, **runner, hyperparams=hyperparams),
                    source=f"{config_dir(directory) / (algo + '.yml')} or --hp")


def validate(cfg: RunConfig, source: str = "") -> RunConfig:
    """The checks every run's config passes, fresh or resumed (a resumed run's ``config.yml``
    may have been edited): a registered algorithm and env id, hyperparameter names the
    constructor accepts, runner keys of the right type. Returns ``cfg`` with sorted
    hyperparameters. The values themselves are checked when the algorithm is built."""
    check_algo(cfg.algo)
    check_env(cfg.env_id)
    check_hyperparameters(cfg.algo, cfg.hyperparams, source=source)
    for key, low in (("seed", 0), ("iterations", 1), ("eval_freq", 1), ("save_freq", 0), ("nproc", 1)):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{key} must be an integer >= {low}{' (0 disables)' if key == 'save_freq' else ''}, "
                              f"got {value!r}")
    if not isinstance(cfg.env_kwargs, dict):
        raise ConfigError(f"env_kwargs must be a mapping, got {cfg.env_kwargs!r}")
    cfg.hyperparams = dict(sorted(cfg.hyperparams.items()))
    return cfg


def config_hash(cfg: RunConfig) -> str:
    """SHA-256 of the resolved config except ``iterations`` and the game's ``max_queries`` (raising
    the run's budgets is the one change a resume accepts), stored in every checkpoint."""
    return hashlib.sha256(json.dumps(fingerprint(cfg), sort_keys=True, default=repr).encode()).hexdigest()


def fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """The config a checkpoint belongs to, flattened (``hyperparams.lr``, ``env_kwargs.n_actions``),
    without the budgets ``iterations`` and ``env_kwargs.max_queries``, and without ``nproc`` where it is 1
    (so the checkpoints written before it existed still match their configs)."""
    flat = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, dict) and key in ("hyperparams", "env_kwargs"):
            flat.update({f"{key}.{name}": item for name, item in value.items() if name != BUDGET_KEYWORD})
        elif key != "iterations" and not (key == "nproc" and value == 1):
            flat[key] = value
    return flat


def set_max_queries(cfg: RunConfig, max_queries: int) -> None:
    """Set the run's budget, the game's one budget keyword ``max_queries`` (``--max-calls``)."""
    cfg.env_kwargs = {**cfg.env_kwargs, BUDGET_KEYWORD: max_queries}


def changed_keys(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two :func:`fingerprint` dicts (present in one only included)."""
    unset = object()
    return sorted(key for key in stored.keys() | current.keys() if stored.get(key, unset) != current.get(key, unset))
