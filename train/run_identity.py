"""What a training run was started under. Resuming a run under other params or other data would silently mix
two experiments, so a run folder records its identity and a differing one is refused (or, when asked,
replaced: under DVC the previous run stays in DVC's cache)."""
import dataclasses
import json
import shutil
from pathlib import Path

from shardio.shards import atomic_path, fingerprint, read_stats

IDENTITY_FILE = "run.json"
# Params that only say how far or how fast to train, or where it is watched: changing them continues the same run.
CONTINUABLE = {"steps", "workers", "snapshot_every", "keep_states", "keep_snapshot_every", "sample_every",
               "log_every", "batch_gpu", "tensorboard", "wandb_project", "skip_bad_samples"}


class RunMismatch(RuntimeError):
    """The run folder holds a run started under other params or data; the message says what to do."""


def identity(model: str, cfg, section, shard_paths: list[str]) -> dict:
    """The model, its configuration, the params that shape training, and the fingerprints of the training shards."""
    config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else repr(cfg)
    params = section.model_dump(exclude=CONTINUABLE)
    shards = [(read_stats(Path(p)) or {}).get("fingerprint", Path(p).name) for p in sorted(shard_paths)]
    return {"model": model, "fingerprint": fingerprint(model, config, params, shards), "params": params}


def claim(run_dir: Path, ident: dict, restart: bool) -> bool:
    """Make `run_dir` the home of the run `ident`; True if an earlier run of another identity was replaced."""
    record = run_dir / IDENTITY_FILE
    existing = json.loads(record.read_text()) if record.is_file() else None
    replaced = False
    if existing is not None and existing.get("fingerprint") != ident["fingerprint"]:
        if not restart:
            raise RunMismatch(f"{run_dir} holds a run started under other params or training shards "
                              f"(run.json fingerprint {existing.get('fingerprint')}, now {ident['fingerprint']}); "
                              "pass --restart-if-changed to start over there, or train into another --data-dir")
        shutil.rmtree(run_dir)
        replaced = True
    run_dir.mkdir(parents=True, exist_ok=True)
    if existing is None or replaced:
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps(ident, indent=1, sort_keys=True, default=str) + "\n")
    return replaced
