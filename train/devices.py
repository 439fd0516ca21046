"""What NVIDIA hardware and driver the machine has, against what the installed torch can use. torch's CUDA build
needs a driver of at least its CUDA major version's branch; with an older one `torch.cuda.is_available()` is False
and, unchecked, training would quietly run on the CPU (under torchrun: gloo on every rank)."""
import re
import shutil
import subprocess
from pathlib import Path

import torch

# NVIDIA's CUDA minor-version compatibility table: CUDA 13.x needs a driver >= 580, 12.x >= 525, 11.x >= 450
DRIVER_BRANCH = {"13": 580, "12": 525, "11": 450}
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
PROC_VERSION = Path("/proc/driver/nvidia/version")


class DeviceError(RuntimeError):
    """A CPU run where GPUs were expected; the message says why and what to do."""


def _nvidia_smi(*args: str) -> list[str]:
    """nvidia-smi's output lines, or none when it is missing, fails or hangs (a broken driver can)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def nvidia_gpus(proc: Path = PROC_GPUS) -> list[str]:
    """The machine's NVIDIA GPUs, whether or not torch can use them: `nvidia-smi -L`'s lines, else the kernel
    driver's entries under /proc/driver/nvidia/gpus."""
    listed = [line for line in _nvidia_smi("-L") if line.startswith("GPU ")]
    if listed or not proc.is_dir():
        return listed
    return [f"GPU at PCI {p.name}" for p in sorted(proc.iterdir())]


def driver_version(proc: Path = PROC_VERSION) -> str | None:
    """The NVIDIA kernel driver's version (nvidia-smi's, else /proc/driver/nvidia/version's), or None."""
    versions = _nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader")
    if versions:
        return versions[0]
    found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", proc.read_text()) if proc.is_file() else None
    return found[1] if found else None


def driver_needed() -> int | None:
    """The oldest driver branch this torch's CUDA build runs on (None: a CPU-only build)."""
    return DRIVER_BRANCH.get((torch.version.cuda or "").split(".")[0]) if torch.version.cuda else None


def describe() -> str:
    """One line: torch, the CUDA it was built for and the driver that needs, the driver found, the GPUs torch sees."""
    built = f"torch {torch.__version__}"
    if torch.version.cuda:
        arch = torch.cuda.get_arch_list()
        built += (f" built for CUDA {torch.version.cuda} (needs an NVIDIA driver >= {driver_needed()}"
                  + (f"; GPUs {arch[0]} to {arch[-1]}" if arch else "") + ")")
    driver = driver_version()
    seen = (f"{torch.cuda.device_count()} GPU(s) visible to torch: {torch.cuda.get_device_name(0)}"
            if torch.cuda.is_available() else "no GPU visible to torch")
    return f"{built}; NVIDIA driver {driver or 'not found'}; {seen}"


def refuse_cpu_fallback(world: int) -> None:
    """Raise DeviceError when torch sees no GPU but this looks like GPU work: the machine has NVIDIA GPUs, or
    several processes were started (torchrun's WORLD_SIZE > 1)."""
    gpus = nvidia_gpus()
    if not gpus and world == 1:
        return
    why = (f"this machine has NVIDIA GPUs ({'; '.join(gpus[:2])}{' ...' if len(gpus) > 2 else ''})" if gpus else
           f"{world} processes were started (WORLD_SIZE={world})")
    raise DeviceError(f"{why} but torch cannot use a GPU, so this would run on the CPU. {describe()}. Update the "
                      "driver (README's install notes), or pass --allow-cpu to run on the CPU anyway.")
