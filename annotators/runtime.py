"""What every torch annotator shares: loading state dicts strictly, choosing the device, autocast on GPU only."""
import contextlib
import logging
from pathlib import Path

import torch

from .weights import RANDOM, WeightsError, describe, resolve

log = logging.getLogger("annotators")

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved state dict (no pickled objects: `weights_only=True`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable or unsafe files
        raise WeightsError(f"cannot read weights file {path} as a torch state dict ({_load_error(err)}): the "
                           "file is damaged, incomplete or not a checkpoint") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} is not a state dict of tensors")
    return state


def _load_error(err: Exception) -> str:
    """torch.load's reason in one line: the unpickler's own complaint, without torch's advice to load the file with
    weights_only=False (wrong for a damaged file, unsafe for a foreign one)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return "not a plain tensor checkpoint: " + " ".join(text.split())
    return next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)


def check_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str,
                optional_suffixes: tuple[str, ...] = ()) -> None:
    """Raise WeightsError unless `state` has exactly the keys and shapes of `expected` (a module's state dict),
    naming the offending key. Keys ending in one of `optional_suffixes` may be absent (e.g. BatchNorm's unused
    `num_batches_tracked`)."""
    missing = [k for k in expected if k not in state and not k.endswith(optional_suffixes)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise WeightsError(f"{what}: state dict does not match the model: "
                           f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                           f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise WeightsError(f"{what}: key {key!r} has shape {tuple(tensor.shape)}, "
                               f"the model expects {tuple(expected[key].shape)}")


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str,
                optional_suffixes: tuple[str, ...] = ()) -> None:
    """Load `state` into `module` requiring exactly its keys and shapes (`check_state`)."""
    check_state(module.state_dict(), state, what, optional_suffixes)
    module.load_state_dict(state, strict=False)


def check_layout(factory, path: Path, what: str, adapt=lambda state: state,
                 optional_suffixes: tuple[str, ...] = ()) -> None:
    """Raise WeightsError unless the file at `path` reads as a state dict that, after `adapt`, has exactly the keys
    and shapes of the module `factory()` builds; the module is built on the meta device (nothing allocated or
    initialised), so this costs about the file's reading."""
    state = adapt(read_state_dict(path))
    with torch.device("meta"):
        module = factory()
    check_state(module.state_dict(), state, f"{what} ({path})", optional_suffixes)


def load_weights(module: torch.nn.Module, weights: str, weights_dir: Path, what: str,
                 adapt=lambda state: state, optional_suffixes: tuple[str, ...] = ()) -> dict:
    """Fill `module` from the weights named in params (or leave it randomly initialised for 'random', with a
    warning); returns their metadata (name and sha256, or 'random')."""
    if weights == RANDOM:
        log.warning("%s uses RANDOM weights (params say weights: random): its outputs are not meaningful", what)
    else:
        load_strict(module, adapt(read_state_dict(resolve(weights, weights_dir))), what, optional_suffixes)
    return describe(weights, weights_dir)


def strip_prefix(state: dict[str, torch.Tensor], *prefixes: str) -> dict[str, torch.Tensor]:
    """The state dict with wrapper prefixes (e.g. 'module.' of DataParallel) removed from its keys."""
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def pick_device(device: str) -> torch.device:
    """The torch device for a device string; asking for CUDA where there is none is an error."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return dev


def effective_precision(device: torch.device, precision: str) -> str:
    """What `autocast(device, precision)` computes in: the params' precision on GPU, fp32 on CPU."""
    return precision if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str):
    """Mixed precision on GPU (fp16/bf16 as params say); a no-op on CPU, so both run the same code."""
    precision = effective_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=AUTOCAST_DTYPES[precision])


def computed_on(device: torch.device, precision: str) -> dict:
    """Where an annotator on `device` with params `precision` computes: device type, GPU model, precision."""
    record = {"device": device.type, "precision": effective_precision(device, precision)}
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def in_fixed_batches(forward, x: torch.Tensor, size: int) -> torch.Tensor:
    """`forward` over the rows of `x` in batches of exactly `size` rows (the last one filled up with copies of its
    final row), so a row's result never depends on how many rows came with it: kernels choose their algorithm
    and summation order by input shape, and a different batch shape changes the low bits of every output."""
    out = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        filled = torch.cat([chunk, chunk[-1:].expand(size - len(chunk), *chunk.shape[1:])])
        out.append(forward(filled)[:len(chunk)])
    return torch.cat(out)


def require_setup(annotator):
    """The annotator itself, once `setup(device)` has loaded its model; a clear error before that."""
    if getattr(annotator, "net", None) is None:
        raise RuntimeError(f"{annotator.name} annotator: call setup(device) first")
    return annotator


def seeded(factory):
    """`factory()` with torch's RNG seeded (and restored after), so randomly initialised weights are the same on
    every worker and every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return factory()
