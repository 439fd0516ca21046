"""Benchmarks cannot rot: each one runs as `make bench` runs it (the file itself, with the plain interpreter), at its
smallest size (`--quick`), and prints JSON lines ending with its headline ratio; no benchmark file is named like
a package it would shadow."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))
# starts a local Ray cluster and three processes that each load CLIP: ~90 s on the loaded 2-core machine
SLOW = {"annotate.py"}


def test_every_benchmark_is_found():
    assert {p.name for p in BENCHMARKS} >= {"ingest.py", "annotate.py", "each_annotator.py", "pack.py",
                                            "training.py", "train_step.py", "metrics.py", "scale.py"}


@pytest.mark.parametrize("script", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name in SLOW else [])
                                    for p in BENCHMARKS])
def test_benchmark_prints_json_lines_ending_with_its_ratio(script):
    result = subprocess.run([sys.executable, str(script.relative_to(REPO)), "--quick"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all(isinstance(line["value"], int | float) for line in lines)
    assert lines[-1]["name"] == "ratio"


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_no_benchmark_shadows_an_importable_module(script):
    # run as a file, a benchmark's folder comes first on sys.path: a file named like a module would replace it
    assert importlib.util.find_spec(script.stem) is None, f"{script.name} shadows the module {script.stem}"
