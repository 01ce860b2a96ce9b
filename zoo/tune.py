"""``prefzoo tune``: Optuna search of one algorithm's hyperparameters at a fixed oracle-query budget.

The convention of rl-baselines3-zoo: the search space of ``<algo>`` is
``zoo_configs/search/<algo>.yml`` (beside ``zoo_configs/<algo>.yml``), one entry per
hyperparameter: ``{type: float, low, high, log}``, ``{type: int, low, high, log}`` or
``{type: categorical, choices: [...]}``. Hyperparameters that define the algorithm's target
(β, n, mixing) are not searched.

Objective (minimized): the algorithm's distance to its own target at ``budget`` oracle queries,
``game/kl_to_target`` where the algorithm has a target, else ``game/exploitability``, averaged over
the tuning seeds (1000, 1001, …: never evaluation seeds). Seeded TPE sampler; median pruning on
the values reported at query checkpoints (each quarter of the budget, per seed) through the
runner's ``report`` callback. The study lives in a journal file inside ``out``, so an interrupted
``tune`` resumes where it stopped and runs only the missing trials, and trials can run in parallel
(``--workers N`` local processes, or ``--backend ray``: Ray tasks) against the one journal.

Writes ``<out>/<algo>.yml`` (entry keyed by the env id: the packaged config with the best values,
usable as ``prefzoo train --config-dir <out>``) and records the effort (trials, budget) in
``<out>/tuning.yml``, which ``compare --tuned`` and ``benchmark --tuned`` read to check that every
algorithm had the same.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from prefzoo.envs import import_modules, metrics, registering_modules
from prefzoo.zoo import backends, config, rundir, runner
from prefzoo.zoo.config import ConfigError

TUNING_SEED_BASE = 1000  # tuning seeds are 1000, 1001, ...; evaluation seeds stay below
CHECKPOINTS = (0.25, 0.5, 0.75)  # fractions of the budget where trials report to the pruner
METADATA = "tuning.yml"


def search_space(algo: str, directory: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The search space of ``algo`` (``<config dir>/search/<algo>.yml``), checked."""
    path = config.config_dir(directory) / "search" / f"{algo}.yml"
    if not path.is_file():
        raise ConfigError(f"no search space for {algo}: expected {path} (one entry per hyperparameter, e.g. "
                          "'lr: {type: float, low: 0.001, high: 0.1, log: true}')")
    space = config.load_yaml(path)
    config.check_hyperparameters(algo, space, source=str(path))
    for name, spec in space.items():
        kind = spec.get("type")
        ok = (kind in ("float", "int") and {"low", "high"} <= spec.keys() and spec["low"] < spec["high"]) or \
            (kind == "categorical" and isinstance(spec.get("choices"), list) and spec["choices"])
        if not ok:
            raise ConfigError(f"{path}: {name}: expected {{type: float|int, low, high[, log]}} with low < high, "
                              f"or {{type: categorical, choices: [...]}}, got {spec}")
    return space


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    values = {}
    for name, spec in space.items():
        if spec["type"] == "categorical":
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "int":
            values[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        else:
            values[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                               log=bool(spec.get("log")))
    return values


def target_metric(algo: str, env_id: str, directory=None, device: str = "cpu", overrides: dict | None = None) -> str:
    """``game/kl_to_target`` when the game is exact and the algorithm has a target on it, else the
    game's headline metric (exploitability on exact games, the estimated win rate on the others),
    read from the algorithm built as the trials build it (``overrides``: their fixed settings)."""
    algorithm = runner.build(config.resolve(algo, env_id, TUNING_SEED_BASE, overrides, directory, device))
    if algorithm.exact_preference and algorithm.target_policy() is not None:
        return metrics.KL_TO_TARGET
    return algorithm.game.headline


def _has_sample_mode(algo: str) -> bool:
    names = config.hyperparameter_names(algo)
    return names is None or "mode" in names


@dataclasses.dataclass
class Objective:
    """The study's objective (minimized): the mean over the tuning seeds of ``metric``'s distance to
    its ideal (:func:`~prefzoo.envs.metrics.shortfall`; the metric itself for a distance such as the
    exploitability) at ``budget`` queries, with the pruner asked at each of :data:`CHECKPOINTS`.
    Plain data, so that trials run in other processes too (local workers, Ray tasks)."""

    algo: str
    env_id: str
    budget: int
    seeds: list[int]
    base: dict[str, Any]
    directory: str | None
    device: str
    space: dict[str, dict[str, Any]]
    metric: str
    trial_root: str
    imports: tuple[str, ...] = ()  # modules that register env_id (:func:`prefzoo.envs.registering_modules`)

    def __call__(self, trial) -> float:
        import optuna

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = suggest(trial, self.space)
        values = []
        for i, s in enumerate(self.seeds):
            cfg = config.resolve(self.algo, self.env_id, s, {**self.base, **params}, self.directory, self.device)
            run_dir = Path(self.trial_root) / f"trial_{trial.number}_seed_{s}"
            shutil.rmtree(run_dir, ignore_errors=True)  # a trial interrupted before: start it over
            marks = [int(f * self.budget) for f in CHECKPOINTS]

            def report(m, headline, i=i, marks=marks):
                while marks and m.get(metrics.QUERIES, 0) >= marks[0]:
                    trial.report(float(metrics.shortfall(self.metric, m[self.metric])),
                                 step=i * self.budget + marks.pop(0))
                    if trial.should_prune():
                        raise optuna.TrialPruned()

            runner.train(cfg, run_dir, progress=False, verbose=False, budget=self.budget, report=report,
                         handle_sigint=False, command=f"prefzoo tune (trial {trial.number}, seed {s})")
            arrays = rundir.progress_arrays(run_dir)
            at_budget = rundir.value_at(arrays[metrics.QUERIES], arrays[self.metric], self.budget)[0]
            values.append(float(metrics.shortfall(self.metric, at_budget)))
        return float(np.mean(values))


def open_study(journal: str | os.PathLike, name: str, sampler_seed: int):
    """The study in ``journal`` (created when new) with a TPE sampler seeded ``sampler_seed`` and
    median pruning. The journal file takes writers from several processes of one machine (or of
    several, on a shared file system)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed)  # the sampler's state is not stored
    return study


def run_trials(objective: Objective, journal: str, name: str, trials: int, sampler_seed: int) -> None:
    """Trials of the study, one after the other, in this process (the main one, a local worker or a
    Ray task), until the study holds ``trials`` (finished or running, in any process): each new
    trial is asked for under the lock of the journal's folder, so concurrent ``tune``s never run
    more trials than asked. Each trial is printed when it ends; a trial that raises is marked failed
    and the error goes on."""
    import optuna

    states = optuna.trial.TrialState
    study = open_study(journal, name, sampler_seed)
    while True:
        with _locked(Path(journal).parent):
            if len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.RUNNING))) >= trials:
                return
            trial = study.ask()
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=states.PRUNED)
            print(f"trial {trial.number}: pruned  {trial.params}", flush=True)
            continue
        except BaseException:
            study.tell(trial, state=states.FAIL)
            raise
        study.tell(trial, value)
        print(f"trial {trial.number}: {value:.4g}  {trial.params}", flush=True)


def _run_trials_in_worker(objective: Objective, *job) -> None:
    torch.set_num_threads(1)  # one process per core
    import_modules(objective.imports)
    run_trials(objective, *job)


def check_definition(study, definition: dict[str, Any], journal: str) -> None:
    """Store what defines the study (budget, tuning seeds, fixed settings, search space, objective,
    config folder) on its first run; a later run with other settings is refused naming them (its
    trials would not be comparable with the stored ones)."""
    definition = json.loads(json.dumps(definition, sort_keys=True, default=str))  # as the journal stores it
    stored = study.user_attrs.get("definition")
    if stored is None:
        study.set_user_attr("definition", definition)
        return
    changed = sorted(key for key in definition.keys() | stored.keys() if definition.get(key) != stored.get(key))
    if changed:
        raise ConfigError(f"the study in {journal} was run with other {', '.join(changed)} "
                          f"({'; '.join(f'{k}: {stored.get(k)!r}' for k in changed)}); use another --out, or the "
                          "same settings to continue it")


def run_in_parallel(jobs: list[tuple], executor) -> None:
    """``run_trials(*job)`` for each job: one Ray task each on a Ray ``executor``; on a local one,
    in this process when there is one job, else each in its own spawned process."""
    if not jobs:  # the study already has its trials
        return
    if executor.name == "ray":
        ray = executor.connect()
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_trials_in_worker)
        ray.get([remote.remote(*job) for job in jobs])
    elif len(jobs) == 1:
        run_trials(*jobs[0])
    else:
        with concurrent.futures.ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as pool:
            for future in [pool.submit(_run_trials_in_worker, *job) for job in jobs]:
                future.result()


def tune(algo: str, env_id: str, out: str | os.PathLike, *, trials: int, budget: int, n_seeds: int = 2,
         seed: int = 0, directory=None, device: str = "cpu", overrides: dict | None = None, workers: int = 1,
         backend: str = "local", address: str | None = None) -> dict:
    """Run (or resume) the study and write the best values; returns them with the study summary.

    ``workers`` > 1 (or ``backend="ray"``) runs trials in parallel: ``workers`` processes (or Ray
    tasks) each run their share of the missing trials against the one journal, each with its own
    sampler seed. Parallel TPE sees whichever trials have finished, so only ``workers=1`` is
    reproducible trial by trial."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("prefzoo tune needs Optuna: pip install 'prefzoo[tune]'") from None
    for name, value in (("--trials", trials), ("--budget", budget), ("--tuning-seeds", n_seeds),
                        ("--workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    executor = backends.make_backend(backend, workers=workers, address=address)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    space = search_space(algo, directory)
    base = {"mode": "sample"} if _has_sample_mode(algo) else {}
    base.update(overrides or {})
    base.update({"iterations": 10**6, "eval_freq": 1, "save_freq": 0})
    seeds = [TUNING_SEED_BASE + i for i in range(n_seeds)]
    objective = Objective(algo, env_id, budget, seeds, base, None if directory is None else str(directory), device,
                          space, target_metric(algo, env_id, directory, device, base),
                          str(out / "trials" / algo / rundir.env_dirname(env_id)), registering_modules([env_id]))
    journal, study_name = str(out / f"{algo}-{rundir.env_dirname(env_id)}.journal"), f"{algo}-{env_id}"
    study = open_study(journal, study_name, seed)
    check_definition(study, {"budget": budget, "tuning_seeds": seeds, "fixed": base, "search_space": space,
                             "objective": objective.metric, "config_dir": objective.directory}, journal)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(states=finished))
    if done:
        print(f"tune: resuming the study in {out} ({done} of {trials} trials done)", flush=True)
    # a resumed study reseeds the sampler past the trials it has; parallel workers get seeds of their own
    with executor:
        run_in_parallel([(objective, journal, study_name, trials, seed + done + 10_000 * k)
                         for k in range(min(workers, max(0, trials - done)))], executor)
    study = open_study(journal, study_name, seed)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"no trial of {algo} on {env_id} completed; nothing to write")
    best = study.best_trial
    n_finished = len(study.get_trials(states=finished))
    metric = objective.metric
    if metrics.METRICS[metric].best:  # a distance to a nonzero ideal, e.g. 1 − win rate
        metric = f"|{metric} - {metrics.METRICS[metric].best:g}|"
    path = write_best(algo, env_id, out, best.params, directory,
                      header=f"# Tuned: prefzoo tune --algo {algo} --env {env_id} --trials {trials} --budget {budget}\n"
                             f"# best mean {metric} over tuning seeds {seeds}: {best.value:.6g} "
                             f"(trial {best.number} of {n_finished})\n")
    record(out, algo, env_id, {"trials": trials, "budget": budget, "objective": metric,
                               "best_value": float(best.value), "tuning_seeds": seeds, "sampler_seed": seed,
                               "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)})
    print(f"best {metric} {best.value:.4g} with {best.params} → {path}")
    return {"best_params": best.params, "best_value": best.value, "objective": metric,
            "config": path, "trials": n_finished, "study": study}


def write_best(algo: str, env_id: str, out: Path, params: dict[str, Any], directory, header: str) -> Path:
    """``<out>/<algo>.yml``: the packaged entry for ``env_id`` with ``params`` on top (other env
    ids already in the file are kept)."""
    path = out / f"{algo}.yml"
    entry = {**config.read_hyperparameters(algo, env_id, directory), **params}
    with _locked(out):
        entries = config.load_yaml(path) if path.is_file() else {}
        entries[env_id] = entry
        path.write_text(header + yaml.safe_dump(entries, sort_keys=True))
    return path


def record(out: Path, algo: str, env_id: str, info: dict[str, Any]) -> None:
    path = out / METADATA
    with _locked(out):
        data = config.safe_yaml(path.read_text(), str(path)) if path.is_file() else {}
        data.setdefault(algo, {})[env_id] = info
        path.write_text(yaml.safe_dump(data, sort_keys=True))


@contextlib.contextmanager
def _locked(out: Path):
    """An exclusive lock on ``<out>/.lock``: studies of several algorithms may share ``out``."""
    import fcntl

    with open(out / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def has_entry(directory: str | os.PathLike, algo: str, env_id: str) -> bool:
    path = Path(directory) / f"{algo}.yml"
    return path.is_file() and env_id in config.load_yaml(path)


def tuned_note(directory: str | os.PathLike, algos, env_ids) -> str:
    """The table line saying how every algorithm was tuned; an error unless every (algo, env)
    pair was tuned with the same number of trials and the same budget."""
    path = Path(directory) / METADATA
    data = config.safe_yaml(path.read_text(), str(path)) if path.is_file() else {}
    efforts, missing = {}, []
    for algo in algos:
        for env_id in env_ids:
            info = (data.get(algo) or {}).get(env_id)
            if info is None or not has_entry(directory, algo, env_id):
                missing.append(f"{algo} on {env_id}")
            else:
                efforts[algo, env_id] = (info["trials"], info["budget"])
    if missing:
        raise ConfigError(f"--tuned {directory}: not tuned: {', '.join(missing)} (run prefzoo tune --out {directory} "
                          "for each, with the same --trials and --budget)")
    if len(set(efforts.values())) > 1:
        listing = ", ".join(f"{a} on {e}: {t} trials × {b:,} queries" for (a, e), (t, b) in efforts.items())
        raise ConfigError(f"--tuned {directory}: unequal tuning effort ({listing}); tune every algorithm with the "
                          "same --trials and --budget")
    trials, budget = next(iter(efforts.values()))
    return (f"Hyperparameters tuned with `prefzoo tune` (Optuna TPE, median pruning): the same {trials} trials × "
            f"{budget:,}-query budget for every algorithm, on tuning seeds ≥ {TUNING_SEED_BASE}.")
