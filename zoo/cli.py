"""The ``prefzoo`` command line (also ``python -m prefzoo``)."""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import prefzoo


def cmd_list(args: argparse.Namespace) -> None:
    """Print the registered environments."""
    print("environments:")
    for env_id in prefzoo.ENV_IDS:
        print(f"  {env_id}")


def cmd_demo(args: argparse.Namespace) -> None:
    """Make each bandit game and print its exact equilibria and π_ref's exploitability."""
    np.set_printoptions(precision=3, suppress=True)
    for env_id in prefzoo.ENV_IDS:
        game = gym.make(env_id, n_contexts=4, n_actions=5, seed=args.seed).unwrapped.game
        print(f"\n{env_id}  (family {game.family})")
        print("  von Neumann winner, context 0:", game.nash(0.0)[0])
        print(f"  exploitability of pi_ref: {game.exploitability(game.ref):.4f}  "
              f"(beta=0.1: {game.exploitability(game.ref, 0.1):.4f})")


COMMANDS = {"list": cmd_list, "demo": cmd_demo}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefzoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list environments and algorithms")
    demo = sub.add_parser("demo", help="run the README demo")
    demo.add_argument("--seed", type=int, default=0, help="game seed")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    COMMANDS[args.command](args)


if __name__ == "__main__":
    main()
