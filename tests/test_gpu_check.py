"""scripts/gpu_check.py: its whole run on the CPU (CPU autocast and a loss scaler standing in for CUDA's) passes
every check or skips it for a stated CUDA-only reason; its judgement of a mixed-precision log ignores the steps the
loss scaler skipped; one check's exception is that check's FAIL and the script goes on."""
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_run(tmp_path, *models: str) -> tuple[list[str], set[str]]:
    """The script's output lines on the CPU, limited to `models` (all when none), and the names of its checks,
    after checking that each line PASSes or SKIPs for CUDA's sake alone and the run ends with 0 failed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    only = ["--models", *models] if models else []
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", *only], env=env, capture_output=True,
                          text=True, timeout=1800)
    lines = done.stdout.splitlines()
    checks = [line for line in lines if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP")]
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert [line for line in checks if not line.startswith(("PASS", "SKIP"))] == []
    skipped = [line for line in checks if line.startswith("SKIP")]
    assert skipped and all(line.startswith("SKIP memory") and "CUDA only" in line for line in skipped)
    assert lines[-1].startswith("0 failed")
    return lines, {line.split(":", 1)[0].split(" ", 1)[1] for line in checks}


def family_checks(model: str) -> set[str]:
    return {f"train {model}", f"resume {model} from a CPU run", f"grid {model}", f"host syncs {model}"}


SHARED_CHECKS = {"evaluate poegan", "generate poegan", "data wait", "annotator seg", "annotator sketch",
                 "annotator clip", "memory coco-256", "memory landscape-1024"}


def test_the_cpu_run_of_a_gan_and_the_diffusion_family_passes_every_check_or_skips_it_for_cuda(tmp_path):
    """The default suite's share: a GAN and the diffusion family (the others' checks run the same code, slow test
    below), and every check that is not per family."""
    _, names = cpu_run(tmp_path, "poegan", "unite-conquer")
    assert family_checks("poegan") | family_checks("unite-conquer") | SHARED_CHECKS <= names
    assert not any(name.endswith(" inade") for name in names)  # --models limits the per-family checks


@pytest.mark.slow
def test_the_whole_cpu_run_passes_every_check_or_skips_it_for_cuda(tmp_path):
    _, names = cpu_run(tmp_path)
    for model in ("poegan", "spade-seg", "spade-sketch", "spade-seg-monce", "inade", "unite-conquer"):
        assert family_checks(model) <= names
    assert SHARED_CHECKS <= names


def test_a_log_is_judged_on_the_steps_the_loss_scaler_took():
    judge = _script().judge
    calibrating = [{"step": 1, "G_grad_norm": math.nan, "G_skipped": 1.0, "G_adv": 0.7, "D_grad_norm": 2.0,
                    "D_skipped": 0.0},
                   {"step": 2, "G_grad_norm": 3.0, "G_skipped": 0.0, "G_adv": 0.6, "D_grad_norm": 1.5,
                    "D_skipped": 0.0}]
    ok, detail = judge(calibrating, ("G", "D"))
    assert ok and "G 1/2" in detail
    broken = calibrating + [{**calibrating[1], "step": 3, "D_grad_norm": math.inf}]
    assert not judge(broken, ("G", "D"))[0]  # a step the scaler took with an inf norm
    always_skipping = [{**calibrating[0], "step": s} for s in range(1, 5)]
    ok, detail = judge(always_skipping, ("G", "D"))
    assert not ok and "more than half skipped: ['G']" in detail
    assert not judge([{"step": 1, "kl_seg": [0.5, math.nan]}], ("G", "D"))[0]  # values outside a phase: always


def test_a_check_that_raises_is_its_own_fail_and_the_next_one_runs(capsys):
    script = _script()

    def broken():
        raise RuntimeError("\nCUDA error: device-side assert triggered\nmore detail")

    script.check("first", broken)
    script.check("second", lambda: (True, "fine"))
    out = capsys.readouterr().out.splitlines()
    assert out == ["FAIL first: RuntimeError: CUDA error: device-side assert triggered", "PASS second: fine"]
    assert script.failed == ["first"]
