"""The same 12-run ``compare`` sweep with 1 and 2 local workers and with Ray on 2 CPUs, in one run.

Each sweep is WIND (packaged config, sample mode) on PrefBandit-Cyclic-v0, seeds 0-11, stopped at
the same query budget; the time is ``compare``'s wall time of the runs (worker start-up
included; the one-off ``ray.init`` is not: a cluster is up before a sweep is sent to it). The
tables of the three sweeps must agree (wall time aside), else the script fails.

    python benchmarks/sweep_scaling.py [--budget 40000] [--runs 12] [--quick]

``--quick``: 2 runs of 1,000 queries (a smoke test of the same code; the speedups mean nothing there).
"""

import argparse
import csv
import tempfile
import time
from pathlib import Path

from _quick import parse_args

from prefzoo.envs.metrics import WALL_S
from prefzoo.zoo import backends, compare

ENV = "prefzoo/PrefBandit-Cyclic-v0"
QUICK = {"budget": 1000, "runs": 2}  # --quick (explicit flags win)


def table(out: Path) -> list[dict]:
    with open(out / "table.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["metric"] != WALL_S]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=40_000, help="oracle queries per run")
    parser.add_argument("--runs", type=int, default=12, help="seeds in the sweep")
    args = parse_args(parser, QUICK)
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=backends.RAY_OBJECT_STORE_BYTES)
    print(f"ray.init (2 CPUs): {time.perf_counter() - t0:.1f} s (not counted)")
    seconds, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend, workers in (("local_1w", "local", 1), ("local_2w", "local", 2), ("ray_2w", "ray", 2)):
            out = Path(tmp) / name
            result = compare.compare(["wind"], ENV, list(range(args.runs)), out, workers=workers, budget=args.budget,
                                     device="cpu", progress=False, backend=backend)
            seconds[name], tables[name] = result["wall_s"], table(out)
            print(f"{name}: {seconds[name]:.1f} s", flush=True)
    ray.shutdown()
    if not tables["local_1w"] == tables["local_2w"] == tables["ray_2w"]:
        raise SystemExit("the three sweeps' tables differ")
    print("tables identical (wall time aside)")
    print(f"RESULT local_2w_speedup={seconds['local_1w'] / seconds['local_2w']:.2f} "
          f"ray_2w_speedup={seconds['local_1w'] / seconds['ray_2w']:.2f} "
          f"ray_overhead={seconds['ray_2w'] / seconds['local_2w']:.2f}")


if __name__ == "__main__":
    main()
