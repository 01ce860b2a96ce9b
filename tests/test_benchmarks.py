"""Benchmarks cannot rot: every ``benchmarks/*.py`` (found by glob, so a new script is covered) runs
with ``--quick`` (tiny sizes, the same code as the full run) and ends with a well-formed RESULT line
(design: ``RESULT name=value [name=value …]``)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))  # _quick.py: a helper
# optional packages a script imports (lm_vs_trl: the [peers] extra, not in [test])
NEEDS = {"lm_throughput": ("transformers",), "lm_vs_trl": ("trl",), "sweep_scaling": ("ray",)}
# scripts that write files: into tmp_path, never the repo
OUT_FLAG = {"query_floor", "reproduce_wind", "last_iterate", "large_game_floor"}

PAIR = re.compile(r"([A-Za-z_][\w./-]*)=(\S+)")
# a value is a number, optionally marked as a bound (query_floor's "<0.64") or labelled (last_iterate's
# "best=mpo:0.012"), or a word label (lm_throughput's "device=cpu", query_floor's "crossover_Y=none");
# nan and inf are neither
NUMBER = re.compile(r"(?:[<>]|[a-z][a-z0-9_]*:)?([-+0-9.eE]+)")
LABEL = re.compile(r"[a-z][a-z0-9_]*")


def parse_result(line: str) -> dict[str, str]:
    """The name=value pairs of a ``RESULT`` line; AssertionError if it is malformed or a value is not
    a finite number or a label."""
    assert line.startswith("RESULT "), f"last line is not a RESULT line: {line!r}"
    body = line[len("RESULT "):].split()
    assert body, "RESULT line without name=value pairs"
    pairs = {}
    for token in body:
        match = PAIR.fullmatch(token)
        assert match, f"not name=value: {token!r} in {line!r}"
        name, value = match.groups()
        number = NUMBER.fullmatch(value)
        if number:
            assert math.isfinite(float(number.group(1))), f"{name}={value} is not finite"
        else:
            assert LABEL.fullmatch(value) and value not in ("nan", "inf"), f"{name}={value}: not a finite number"
        assert name not in pairs, f"{name} twice in {line!r}"
        pairs[name] = value
    assert any(NUMBER.fullmatch(v) for v in pairs.values()), f"no number in {line!r}"
    return pairs


def test_result_line_parser():
    assert parse_result("RESULT a=1.5 b=2e+06 c=<0.64 device=cpu crossover_Y=none best=mpo:0.012") == \
        {"a": "1.5", "b": "2e+06", "c": "<0.64", "device": "cpu", "crossover_Y": "none", "best": "mpo:0.012"}
    for bad in ("RESULT", "RESULT a=nan", "RESULT a=inf", "RESULT a=1 a=2", "RESULT a", "RESULT x=cpu",
                "speedup=2", "RESULT a=1,5", "RESULT best=mpo:nan", "RESULT best=mpo:"):
        with pytest.raises(AssertionError):
            parse_result(bad)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_quick_run_ends_with_result(script, tmp_path):
    for package in NEEDS.get(script.stem, ()):
        pytest.importorskip(package)
    command = [sys.executable, str(script), "--quick"]
    if script.stem in OUT_FLAG:
        command += ["--out", str(tmp_path / "out")]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script.name} --quick failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"{script.name} printed nothing"
    parse_result(lines[-1].strip())
