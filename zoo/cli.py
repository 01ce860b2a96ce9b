"""The ``prefzoo`` command line (also ``python -m prefzoo``).

Subcommands: ``list``, ``train``, ``compare``, ``tournament``, ``demo``, ``estimators``,
``reproduce``, ``tune``, ``benchmark``; see ``prefzoo <cmd> -h``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

import prefzoo
from prefzoo.algorithms.checkpoint import CheckpointError
from prefzoo.envs import game_class
from prefzoo.envs.metrics import KL_TO_TARGET, QUERIES
from prefzoo.envs.oracle import declarations
from prefzoo.zoo import config, distributed, papers, rundir, runner
from prefzoo.zoo.config import ConfigError, int_at_least
from prefzoo.zoo.estimators_cli import add_parser as add_estimators_parser
from prefzoo.zoo.estimators_cli import cmd_estimators

DEMO_ENV = "prefzoo/PrefBandit-Cyclic-v0"
DEMO_ALGOS = ("wind", "sppo", "iterative_bon")
DEMO_BUDGET = 200_000  # oracle queries per run; sized for about two minutes on 2 cores
# exit codes: bad input, an I/O or data error, the game's budget spent before the run's end, the judge
# failed (checkpointed), Ctrl-C
EXIT_USAGE, EXIT_FAILED, EXIT_BUDGET_SPENT, EXIT_JUDGE_FAILED, EXIT_INTERRUPTED = 2, 1, 3, 4, 130


def cmd_list(args: argparse.Namespace) -> None:
    """Print the registered environments and algorithms (with their config files)."""
    print("environments (what each game declares, read from its class):")
    width = max(map(len, prefzoo.ENV_IDS))
    for env_id in prefzoo.ENV_IDS:
        game = game_class(env_id)
        declared = " ".join(f"{k}={v}" for k, v in declarations(game).items())
        print(f"  {env_id:{width}s}  {declared}  headline={game.headline}")
    print("algorithms:")
    directory = config.config_dir(args.config_dir)
    width = max(map(len, prefzoo.ALGORITHMS))
    for name, cls in sorted(prefzoo.ALGORITHMS.items()):
        has = (directory / f"{name}.yml").is_file()
        print(f"  {name:{width}s}  {cls.__name__:20s} {'zoo_configs/' + name + '.yml' if has else '(constructor defaults)'}")


def _train_config(args: argparse.Namespace) -> tuple[config.RunConfig, Path | None]:
    """The run's config and, on a resume, its directory (None: a fresh run, whose directory is made later)."""
    if args.resume is None:
        if not args.algo or not args.env:
            raise ConfigError("train needs --algo and --env")
        overrides = config.parse_overrides(args.hp)
        for key in ("iterations", "eval_freq", "save_freq", "nproc"):
            if getattr(args, key) is not None:
                overrides[key] = getattr(args, key)
        cfg = config.resolve(args.algo, args.env, args.seed, overrides, args.config_dir, _device(args, overrides))
        if args.max_calls is not None:
            config.set_max_queries(cfg, args.max_calls)
        return cfg, None
    if args.resume != "latest":
        run_dir = Path(args.resume)
    elif args.algo and args.env:
        run_dir = rundir.latest_run_dir(args.log_folder, args.algo, args.env)
    else:
        raise ConfigError("--resume needs a run directory, or --algo and --env to pick the latest run")
    cfg = rundir.load_run_config(run_dir)
    if args.iterations is not None:  # extends the run (the runner refuses fewer than it has)
        cfg.iterations = args.iterations
    if args.max_calls is not None:  # raises the game's budget for the whole run
        config.set_max_queries(cfg, args.max_calls)
    if args.nproc is not None and args.nproc != cfg.nproc:
        raise ConfigError(f"--nproc {args.nproc}: {run_dir} was trained with nproc={cfg.nproc}, and a resume "
                          f"continues on {cfg.nproc} processes (leave --nproc out)")
    return cfg, run_dir


def cmd_train(args: argparse.Namespace) -> None:
    """Train one algorithm on one env; logs to ``<log-folder>/<algo>/<env>_<N>/``. A run of ``nproc`` > 1
    outside a launcher runs this command in ``nproc`` processes (:mod:`prefzoo.zoo.distributed`)."""
    cfg, run_dir = _train_config(args)
    processes, world = None, distributed.world_size()
    if cfg.nproc > 1 and world == 1:
        sys.exit(distributed.launch(cfg.nproc, args.argv))
    if world > 1:
        cfg.nproc = distributed.run_nproc(cfg.nproc, world)
        processes = distributed.Processes(cfg)
    writes = processes is None or processes.is_main
    if writes:
        run_dir = run_dir or rundir.new_run_dir(args.log_folder, cfg.algo, cfg.env_id)
        print(f"seed {cfg.seed}; logging to {run_dir}" + (f" ({cfg.nproc} processes)" if processes else ""),
              flush=True)
    if processes is not None:
        run_dir = Path(processes.broadcast(str(run_dir)))
    try:
        result = runner.train(cfg, run_dir, resume=args.resume is not None, progress=args.progress,
                              command=shlex.join(["prefzoo", *sys.argv[1:]]), processes=processes)
    except ConfigError:
        if writes and args.resume is None and {p.name for p in run_dir.iterdir()} <= {rundir.LOCK_FILE}:
            shutil.rmtree(run_dir)  # the algorithm could not be built: leave no empty run behind
        raise
    if processes is not None:
        processes.close()
    if writes:  # the main process's exit is the run's; the others end with 0
        if result["status"] != "already done":
            _print_summary(result, run_dir)
        _exit_status(result["status"], run_dir)


def _print_summary(result: dict, run_dir: Path) -> None:
    final = result["metrics"]
    summary = ", ".join(f"{k} {final[k]:.4g}" for k in (result["headline"], KL_TO_TARGET, QUERIES) if k in final)
    print(f"{result['status']} at iteration {result['iteration']}: {summary}")
    print(f"run directory: {run_dir}   (TensorBoard: {_tensorboard()} --logdir {run_dir.parent})")


def _exit_status(status: str, run_dir: Path) -> None:
    """Exit with the code of a run that stopped before its end (interrupted, budget spent, judge failed)."""
    if status == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if status == runner.BUDGET_SPENT:  # resumable: `train --resume RUN --max-calls N`
        sys.exit(EXIT_BUDGET_SPENT)
    if status == runner.JUDGE_FAILED:  # resumable once the judge answers again
        print(f"the judge failed; its answers so far are checkpointed: `prefzoo train --resume {run_dir}`",
              file=sys.stderr)
        sys.exit(EXIT_JUDGE_FAILED)


def cmd_compare(args: argparse.Namespace) -> None:
    """Seeds × algorithms in parallel, then a table at fixed query budgets and plots."""
    from prefzoo.zoo import compare, tune

    overrides = config.parse_overrides(args.hp)
    directory, note = args.config_dir, None
    if args.tuned is not None:
        if args.config_dir is not None:
            raise ConfigError("give --tuned DIR or --config-dir DIR, not both")
        directory, note = args.tuned, tune.tuned_note(args.tuned, args.algos, [args.env])
    result = compare.compare(args.algos, args.env, args.seeds, args.out, workers=args.workers, budget=args.budget,
                             iterations=args.iterations, overrides=overrides, directory=directory,
                             device=_device(args, overrides), progress=args.progress, eval_freq=args.eval_freq,
                             backend=args.backend, address=args.address, retries=args.retries, note=note)
    if result["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)


def cmd_tune(args: argparse.Namespace) -> None:
    """Optuna search of one algorithm's hyperparameters at a fixed query budget."""
    from prefzoo.zoo import tune

    overrides = config.parse_overrides(args.hp)
    tune.tune(args.algo, args.env, args.out, trials=args.trials, budget=args.budget, n_seeds=args.tuning_seeds,
              seed=args.seed, directory=args.config_dir, device=_device(args, overrides), overrides=overrides,
              workers=args.workers, backend=args.backend, address=args.address)


def cmd_benchmark(args: argparse.Namespace) -> None:
    """Every algorithm on every game of a suite: normalized scores, IQM leaderboard, per-game table."""
    from prefzoo.zoo import benchmark

    benchmark.benchmark(args.out, algos=args.algos, games=args.games, seeds=args.seeds, budget=args.budget,
                        workers=args.workers, backend=args.backend, address=args.address, retries=args.retries,
                        tuned=args.tuned, device=args.device, progress=args.progress)


def cmd_tournament(args: argparse.Namespace) -> None:
    """Round-robin win rates between saved policies, π_ref (and the Nash equilibrium on exact games)."""
    from prefzoo.zoo import tournament

    tournament.tournament(args.runs, args.out)


def cmd_demo(args: argparse.Namespace) -> None:
    """``compare`` of WIND, SPPO and iterative BoN on a cyclic bandit."""
    from prefzoo.zoo import compare

    result = compare.compare(list(DEMO_ALGOS), DEMO_ENV, [0, 1, 2], args.out, workers=args.workers, budget=args.budget,
                             device=_device(args, {}), progress=args.progress)
    if result["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)
    from prefzoo.zoo import tournament

    tour = tournament.tournament(result["run_dirs"], Path(args.out) / "tournament", verbose=False)
    plots = "\n".join(f"    {p}" for p in [*result["plots"], tour["png"]])
    print(f"""
Results
  table (mean ± s.e. at 25/50/100 % of {args.budget:,} queries):
    {result["table_md"]}  and  {result["table_csv"]}
  plots (open with any image viewer):
{plots}
  tournament win-rate matrix: {tour["md"]}
  per-run logs (progress.csv, config.yml, checkpoints, TensorBoard events): {result["logs"]}
  TensorBoard:  {_tensorboard()} --logdir {result["logs"]}   then open http://localhost:6006
""")


def cmd_reproduce(args: argparse.Namespace) -> None:
    """Regenerate a paper's claims (figures + report with verdicts) on prefzoo games."""
    summary = papers.reproduce(args.paper, args.out, seeds=args.seeds, quick=args.quick, progress=args.progress)
    print("\n" + papers.format_summary(summary))


def _device(args: argparse.Namespace, overrides: dict) -> str | None:
    """``--device`` if given; else ``auto`` unless ``--hp device=…`` chose one (both: an error
    in :func:`~prefzoo.zoo.config.resolve` when they differ)."""
    if args.device is not None:
        return args.device
    return None if "device" in overrides else "auto"


def writable_dir(path: str | os.PathLike, flag: str) -> None:
    """``ConfigError`` naming ``flag`` unless ``path`` is a folder this process can write, or can
    be created (its nearest existing ancestor is a writable folder); creates nothing."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path if existing == path else existing} exists and is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} is not writable" if existing == path else
                          f"{flag} {path} cannot be created: {existing} is not writable")


def _tensorboard() -> str:
    """The ``tensorboard`` next to this Python (the venv's), relative when shorter."""
    path = Path(sys.executable).parent / "tensorboard"
    if not path.exists():
        return "tensorboard"
    rel = os.path.relpath(path)
    return rel if len(rel) < len(str(path)) else str(path)


COMMANDS = {"list": cmd_list, "train": cmd_train, "compare": cmd_compare,
            "tournament": cmd_tournament, "demo": cmd_demo, "estimators": cmd_estimators,
            "reproduce": cmd_reproduce, "tune": cmd_tune, "benchmark": cmd_benchmark}


def _common(p: argparse.ArgumentParser, hp: bool = True) -> None:
    if hp:
        p.add_argument("--hp", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                       help="override a hyperparameter (value parsed as YAML), e.g. --hp beta=0.2 "
                            "'env_kwargs={n_contexts: 4}'")
        p.add_argument("--config-dir", default=None,
                       help=f"folder of <algo>.yml files (default: ${config.CONFIG_DIR_ENV} or the packaged zoo_configs)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"],
                   help="torch device of every algorithm (default auto: CUDA when present); overrides a "
                        "config file's device, and differing from --hp device=… is an error")
    p.add_argument("--threads", type=int_at_least(0), default=1,
                   help="torch CPU threads (default 1: fastest for the small policies here, and "
                        "several threads spin badly on a busy machine; 0 = torch's default)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (--no-progress: SB3's table on stdout instead, for train)")


def _backend_args(p: argparse.ArgumentParser, retries: bool = True) -> None:
    from prefzoo.zoo import backends

    p.add_argument("--backend", default="local", choices=backends.BACKENDS,
                   help="local: --workers processes; ray: Ray tasks (pip install 'prefzoo[ray]')")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (host:port, ray://host:port or auto); default: start a local "
                        "Ray instance with --workers CPUs")
    if not retries:
        return
    p.add_argument("--retries", type=int, default=backends.DEFAULT_RETRIES,
                   help="resubmit a run whose worker died or raised, from its last checkpoint, up to N times "
                        f"(default {backends.DEFAULT_RETRIES})")


def build_parser() -> argparse.ArgumentParser:
    algos = ", ".join(sorted(prefzoo.ALGORITHMS))
    parser = argparse.ArgumentParser(prog="prefzoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list environments and algorithms")
    p.add_argument("--config-dir", default=None, help="folder of <algo>.yml files")

    p = sub.add_parser("train", help="train one algorithm on one environment")
    p.add_argument("--algo", help=f"algorithm: {algos}")
    p.add_argument("--env", help="environment id, e.g. prefzoo/PrefBandit-Cyclic-v0 (see `prefzoo list`)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="the algorithm's seed (the game is fixed by the env)")
    p.add_argument("--iterations", type=int_at_least(1), default=None, help="iterations (default: from the config)")
    p.add_argument("--eval-freq", dest="eval_freq", type=int_at_least(1), default=None,
                   help="evaluate and log every N iterations (default: from the config)")
    p.add_argument("--save-freq", dest="save_freq", type=int_at_least(0), default=None,
                   help="checkpoint every N iterations, 0 = only at the end (default: from the config)")
    p.add_argument("--max-calls", dest="max_calls", type=int_at_least(0), default=None,
                   help="the game's budget of paid queries for the whole run (comparisons; an LM game's model or "
                        "judge calls); a spent run stops with a checkpoint, and a resume with a higher budget "
                        "continues it")
    p.add_argument("--nproc", type=int_at_least(1), default=None,
                   help="train on N processes through accelerate (DDP: gloo on CPU, NCCL on GPUs); grpo, online_dpo "
                        "and online_ipo on prefzoo/LMGame-v0 with policy=hf; N divides batch_size (default: from "
                        "the config, else 1; under `accelerate launch` its number of processes)")
    p.add_argument("--log-folder", dest="log_folder", default="logs", help="root of the run directories")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN_DIR",
                   help="continue a killed run from its last checkpoint (default: the latest run of --algo on --env)")
    _common(p)

    p = sub.add_parser("compare", help="algorithms × seeds at fixed oracle-query budgets: table + plots")
    p.add_argument("--algos", nargs="+", required=True, help=f"algorithms among: {algos}")
    p.add_argument("--env", required=True, help="environment id")
    p.add_argument("--seeds", nargs="+", type=int_at_least(0), default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--out", default="results", help="output folder (runs under <out>/logs)")
    p.add_argument("--workers", type=int_at_least(1), default=os.cpu_count(),
                   help="parallel processes (default: cores)")
    p.add_argument("--budget", type=int_at_least(1), default=None,
                   help="oracle queries per run; each run stops there (default: the smallest run's total)")
    p.add_argument("--iterations", type=int_at_least(1), default=None,
                   help="iteration cap per run (default: the config's; raise it if a run misses the budget)")
    p.add_argument("--eval-freq", dest="eval_freq", type=int_at_least(1), default=None,
                   help="evaluate every N iterations")
    p.add_argument("--tuned", default=None, metavar="DIR",
                   help="use the configs `prefzoo tune --out DIR` wrote; every algorithm must have been tuned with "
                        "the same --trials and --budget (the table header says so)")
    _backend_args(p)
    _common(p)

    p = sub.add_parser("tune", help="Optuna search of an algorithm's hyperparameters at a fixed query budget")
    p.add_argument("--algo", required=True, help=f"algorithm (search space: zoo_configs/search/<algo>.yml): {algos}")
    p.add_argument("--env", required=True, help="environment id")
    p.add_argument("--trials", type=int, required=True, help="number of Optuna trials (a resumed study runs the rest)")
    p.add_argument("--budget", type=int, required=True, help="oracle queries per tuning run")
    p.add_argument("--tuning-seeds", dest="tuning_seeds", type=int, default=2,
                   help="runs per trial, seeds 1000, 1001, … (never evaluation seeds); default 2")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    p.add_argument("--out", default="results/tuned", help="folder of the study and of the tuned <algo>.yml")
    p.add_argument("--workers", type=int_at_least(1), default=1,
                   help="trials in parallel (default 1: reproducible trial by trial)")
    _backend_args(p, retries=False)
    _common(p)

    from prefzoo.zoo import benchmark as suite

    p = sub.add_parser("benchmark", help="every algorithm on every game of a suite: IQM leaderboard + per-game table")
    p.add_argument("--algos", nargs="+", default=list(suite.DEFAULT_ALGOS),
                   help=f"algorithms (default: {' '.join(suite.DEFAULT_ALGOS)})")
    p.add_argument("--games", nargs="+", default=list(suite.DEFAULT_GAMES),
                   help="environment ids (default: every bandit family and both token games)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(suite.DEFAULT_SEEDS), help="seeds (default 0 1 2)")
    p.add_argument("--budget", type=int, default=suite.DEFAULT_BUDGET,
                   help=f"oracle queries per run (default {suite.DEFAULT_BUDGET:,})")
    p.add_argument("--out", default="results/benchmark", help="output folder")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes (default: cores)")
    p.add_argument("--tuned", default=None, metavar="DIR",
                   help="use DIR/<algo>.yml (from prefzoo tune) where it has an entry for the game")
    _backend_args(p)
    _common(p, hp=False)

    p = sub.add_parser("tournament", help="round-robin win-rate matrix between saved policies (exact, or "
                                          "estimated where the game has no exact services)")
    p.add_argument("--runs", nargs="+", required=True,
                   help="run directories, checkpoints (.pt) or policy.npy files of one game")
    p.add_argument("--out", default="results/tournament", help="output folder")

    p = sub.add_parser("demo", help=f"compare {', '.join(DEMO_ALGOS)} on {DEMO_ENV} over 3 seeds")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--workers", type=int_at_least(1), default=os.cpu_count(),
                   help="parallel processes (default: cores)")
    p.add_argument("--budget", type=int_at_least(1), default=DEMO_BUDGET, help="oracle queries per run")
    _common(p, hp=False)
    add_estimators_parser(sub)

    p = sub.add_parser("reproduce", help="regenerate a paper's checkable claims: figures + markdown report")
    p.add_argument("paper", choices=sorted(papers.PAPERS),
                   help="wind: Faster WIND (arXiv:2410.20727), Theorem 1, Figures 1-2")
    p.add_argument("--out", default=None, help="output folder (default: results/reproduce_<paper>)")
    p.add_argument("--seeds", nargs="+", type=int_at_least(0), default=[0, 1, 2],
                   help="seeds of the sample-mode timing runs (default 0 1 2)")
    p.add_argument("--quick", action="store_true", help="tiny budgets (seconds; a smoke test, not a result)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train --nproc N` runs in each process
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    try:
        for flag in ("out", "log_folder"):
            if getattr(args, flag, None) is not None:
                writable_dir(getattr(args, flag), "--" + flag.replace("_", "-"))
        COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"prefzoo {args.command}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except (CheckpointError, OSError) as err:
        print(f"prefzoo {args.command}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
