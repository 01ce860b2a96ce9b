"""The ``--quick`` flag of the benchmark scripts: tiny sizes through the same code, a few seconds
(``tests/test_benchmarks.py`` runs every script so)."""

from __future__ import annotations

import argparse


def parse_args(parser: argparse.ArgumentParser, quick: dict) -> argparse.Namespace:
    """Add ``--quick`` to ``parser`` and parse; with it, ``quick`` replaces the defaults (flags given
    explicitly still win)."""
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes, a few seconds (smoke test): {quick}")
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args()
    return args
