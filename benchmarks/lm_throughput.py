"""Cost of one training iteration on LMGame against the bare model cost of the same batch.

For WIND, online DPO, GRPO, SPPO (K = 2) and iterative BoN (N = 2, sampled normalizer)
(``policy="hf"`` on ``prefzoo/LMGame-v0``, VADER oracle, one gradient step per batch:
``grad_steps=1`` / ``n_epochs=1``) one iteration is timed by ``algo.step()`` (no evaluation). The
bare cost, measured in the same process on the same device and interleaved with the iterations:
one ``model.generate`` call over the iteration's whole batch (2·B responses for B prompts; GRPO:
B·G) plus one forward and backward pass of the summed sequence log-probabilities over it.
``overhead_vs_bare`` = iteration time / bare time per algorithm; the RESULT line reports the
largest (target ≤ 1.5). ``tokens_per_s`` is the generated tokens per second of the bare
``generate``.

The iteration does more than the bare floor by design: a π_ref forward (``ref_log_prob``), the
π_t forward of WIND, SPPO and iterative BoN, the oracle (decode + VADER, cached) and the numpy
glue. Every algorithm draws its responses in one batched call: with one call per response slot the
small model's per-token overhead is paid again (measured on CPU: WIND x1.75, DPO x1.60 with two
calls of B; SPPO x1.59 with two, x1.20 with one). Measured (CPU, built-in model, B = 32, one thread,
idle 2-core box): WIND x1.34-1.42, online DPO x1.25-1.31, GRPO x1.32-1.34, SPPO x1.20, iterative
BoN x1.34, 10,000-11,600 generated tokens/s. No GPU figure yet (no GPU was available to this
task); ``--size small`` (the GPT-2-small-sized model) on CPU, one round of B = 8: WIND x1.40.

Models: on CPU the built-in model (2 layers, width 64); on CUDA a GPT-2-small-sized model (12
layers, width 768) built from a config with random weights and the built-in tokenizer, saved with
``save_pretrained`` and loaded as a user's model would be (``--size small`` forces it on CPU).

``--nproc N`` (N > 1; needs the ``[dist]`` extra) adds the data-parallel speedup on CPU:
``prefzoo train --algo grpo --env prefzoo/LMGame-v0 --hp batch_size=<batch>`` (the zoo config,
``batch`` prompts x 4 completions, 12 new tokens max) run as a subprocess with ``--nproc 1`` and
``--nproc N`` (prefzoo's own launch through accelerate's launcher: DDP over gloo, one torch thread
per process), alternated ``rounds`` times. The seconds per iteration are read from the runs'
``progress.csv`` (``time/wall_s``, training steps only: the difference between the evaluations
after 2k and k iterations, so start-up, the launcher, the model load, the first k iterations and
the evaluations are not counted). ``ddp_<N>p_speedup`` = median 1-process seconds per iteration /
median N-process seconds per iteration at the same global batch. Measured with ``--nproc 2`` (CPU,
built-in model, 32 prompts x 4, on 2 cores shared with other jobs, load average 2.2-3.2): 176 ms per
iteration on 1 process, 134 ms on 2, x1.32; round by round x0.53, 1.30, 1.39, 1.30, 0.84 (another job
took the second core in the first and last rounds).

Run: ``.venv/bin/python benchmarks/lm_throughput.py [--device auto|cpu|cuda] [--size builtin|small]
[--nproc N] [--quick]`` (``--quick``: 4 prompts, one round, a smoke test of the same code).
Last line: ``RESULT overhead_vs_bare=<x> tokens_per_s=<y> device=<cpu|cuda>`` (with ``--nproc N``:
also ``ddp_<N>p_speedup=<s>``).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _quick import parse_args

import prefzoo
from prefzoo.algorithms.base import resolve_device

ALGOS = {"wind": {"mode": "sample", "grad_steps": 1, "lr": 1e-4},
         "online_dpo": {"grad_steps": 1, "lr": 1e-4},
         "grpo": {"n_epochs": 1, "group_size": 4, "lr": 1e-4, "lr_decay_start": 0},
         "sppo": {"mode": "sample", "k": 2, "grad_steps": 1, "lr": 1e-4},  # 2 responses per prompt, as WIND
         "iterative_bon": {"mode": "sample", "n": 2, "grad_steps": 1, "lr": 1e-4}}
QUICK = {"batch_size": 4, "rounds": 1, "ddp_iterations": 1}  # --quick (explicit flags win)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def small_model_dir(folder: str) -> str:
    """A GPT-2-small-sized model (random weights) with the built-in tokenizer, saved to ``folder``."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from prefzoo.envs.lm.builtin import builtin_model_path

    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path())
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=768, n_layer=12, n_head=12,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def bare(algo, contexts: np.ndarray, device: torch.device) -> tuple[float, float]:
    """Seconds of one ``generate`` over ``contexts`` plus one forward/backward of the summed
    log-probabilities; and the generated tokens per second."""
    policy, game = algo.policy, algo.game
    sync(device)
    start = time.perf_counter()
    handles = policy.sample(contexts, algo.rng)
    sync(device)
    generated = time.perf_counter() - start
    loss = policy.log_prob(torch.as_tensor(contexts, device=device), torch.as_tensor(handles, device=device)).sum()
    loss.backward()
    policy.zero_grad(set_to_none=True)
    sync(device)
    tokens = sum(len(game.store.tokens[h]) for h in handles)
    return time.perf_counter() - start, tokens / generated


def seconds_per_iteration(nproc: int, batch: int, iterations: int, folder: str) -> float:
    """Seconds per training iteration of ``prefzoo train --algo grpo --nproc <nproc>`` over its
    iterations ``iterations + 1 .. 2 * iterations`` (``time/wall_s`` in ``progress.csv``)."""
    command = [sys.executable, "-m", "prefzoo", "train", "--algo", "grpo", "--env", "prefzoo/LMGame-v0",
               "--iterations", str(2 * iterations), "--eval-freq", str(iterations), "--save-freq", "0", "--no-progress",
               "--threads", "1", "--nproc", str(nproc), "--hp", f"batch_size={batch}", "--log-folder", folder]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    (progress,) = Path(folder).glob("grpo/*/progress.csv")
    with open(progress) as file:
        wall = {int(float(row["time/iterations"])): float(row["time/wall_s"]) for row in csv.DictReader(file)}
    return (wall[2 * iterations] - wall[iterations]) / iterations


def ddp_speedup(nproc: int, batch: int, rounds: int, iterations: int) -> float:
    """Median seconds per GRPO iteration on 1 process / on ``nproc`` processes, alternated ``rounds`` times."""
    times = {1: [], nproc: []}
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(rounds):
            for n in times:
                times[n].append(seconds_per_iteration(n, batch, iterations, f"{folder}/{n}_{rep}"))
                print(f"GRPO, {n} process(es), round {rep}: {times[n][-1] * 1e3:.1f} ms per iteration", flush=True)
    one, many = statistics.median(times[1]), statistics.median(times[nproc])
    print(f"GRPO, {batch} prompts x 4 per iteration: 1 process {one * 1e3:.1f} ms, {nproc} processes "
          f"{many * 1e3:.1f} ms per iteration (medians of {rounds}), speedup x{one / many:.2f}", flush=True)
    return one / many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", choices=["builtin", "small"], default=None,
                        help="model: the built-in one (CPU default) or GPT-2-small-sized (CUDA default)")
    parser.add_argument("--batch-size", type=int, default=None, help="prompts per iteration (CPU 32, CUDA 64)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nproc", type=int, default=1, help="also measure the speedup of this many CPU processes")
    parser.add_argument("--ddp-iterations", type=int, default=10,
                        help="with --nproc: k, the iterations k+1..2k of each run are timed")
    args = parse_args(parser, QUICK)
    device = resolve_device(args.device)
    size = args.size or ("small" if device.type == "cuda" else "builtin")
    batch = args.batch_size or (64 if device.type == "cuda" else 32)
    if device.type == "cpu":
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        model = small_model_dir(folder) if size == "small" else None
        env = gym.make("prefzoo/LMGame-v0", model=model, max_new_tokens=16)
        overhead, speeds = {}, []
        for name, hyperparams in ALGOS.items():
            prompts = batch // hyperparams["group_size"] if name == "grpo" else batch
            algo = prefzoo.make_algo(name, env, seed=0, policy="hf", device=str(device), batch_size=prompts,
                                     **hyperparams)
            per_iteration = batch if name == "grpo" else 2 * batch  # responses sampled per iteration
            contexts = algo.game.sample_contexts(per_iteration, np.random.default_rng(1))
            algo.step()  # warm-up (allocations, caches)
            bare(algo, contexts, device)
            step_times, bare_times = [], []
            for _ in range(args.rounds):
                sync(device)
                start = time.perf_counter()
                algo.step()
                sync(device)
                step_times.append(time.perf_counter() - start)
                seconds, tokens_per_s = bare(algo, contexts, device)
                bare_times.append(seconds)
                speeds.append(tokens_per_s)
            step, floor = statistics.median(step_times), statistics.median(bare_times)
            overhead[name] = step / floor
            print(f"{name:11s} iteration {step * 1e3:8.1f} ms   bare {floor * 1e3:8.1f} ms   overhead "
                  f"x{overhead[name]:.2f}", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, model {size}, {batch} prompts per iteration (GRPO: {batch // 4} x 4), 16 new tokens max")
    extra = " ".join(f"overhead_{k}={v:.2f}" for k, v in overhead.items())
    if args.nproc > 1:
        speedup = ddp_speedup(args.nproc, batch, args.rounds, args.ddp_iterations)
        extra += f" ddp_{args.nproc}p_speedup={speedup:.2f}"
    print(f"RESULT overhead_vs_bare={max(overhead.values()):.2f} tokens_per_s={statistics.median(speeds):.0f} "
          f"device={device.type} {extra}")


if __name__ == "__main__":
    main()
