"""What a weight snapshot records of the run that made it: the family, the configuration's name, the resolved
configuration (profile, params and training shards applied) and the params that shaped training, as JSON text
under one key (as EDM's training_options.json and diffusers' register_to_config keep theirs). Evaluation and
generation build the network from it rather than from the params of the day, which may have changed since."""
import dataclasses
import json
from pathlib import Path

from .run_identity import CONTINUABLE

KEY = "run_config"  # the snapshot's entry: JSON text (snapshots load with weights_only=True, so no objects)


class RecordError(ValueError):
    """A snapshot's record this code cannot build from; the message names the snapshot and what to do."""


def record(model: str, config_name: str, cfg, section) -> dict:
    """The record of a run of `model` with configuration `cfg` (built from profile `config_name`) under params
    `section` (train.<model>; what only says how long or how watched is left out, as in run.json); `cfg` None:
    a record without the configuration's fields (what the params give when it cannot be resolved)."""
    config = None if cfg is None else dataclasses.asdict(cfg)
    return _plain({"model": model, "config_name": config_name, "config": config,
                   "params": section.model_dump(exclude=CONTINUABLE, mode="json")})


def entry(run_record: dict | None) -> dict:
    """The snapshot entries that carry `run_record` ({} for none)."""
    return {} if run_record is None else {KEY: json.dumps(run_record, sort_keys=True)}


def read(snapshot: Path) -> dict | None:
    """The record a snapshot carries, or None for one saved before snapshots carried it (memory-mapped: the
    weights are not read)."""
    import torch

    payload = torch.load(snapshot, map_location="cpu", weights_only=True, mmap=True)
    return json.loads(payload[KEY]) if KEY in payload else None


def rebuild(fam, run_record: dict, snapshot: Path):
    """The configuration `run_record` holds, as the family's configuration object; RecordError when this code
    no longer has its profile or its fields."""
    name = run_record["config_name"]
    try:
        base = fam.config(name)
    except KeyError:
        raise RecordError(f"{snapshot} was trained with configuration {name!r}, which this code no longer has: "
                          "evaluate it with the code it was trained with, or train again") from None
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(run_record["config"]) - fields)
    if unknown:
        raise RecordError(f"{snapshot} records configuration fields {unknown} that {type(base).__name__} no longer "
                          "has: evaluate it with the code it was trained with, or train again")
    return dataclasses.replace(base, **{k: _like(getattr(base, k), v) for k, v in run_record["config"].items()})


def differences(run_record: dict, now: dict) -> list[str]:
    """'key: trained → now' for each way the record `now` (`record` of what the params give today) differs from
    `run_record`: the configuration's name, its fields (unless `now` has none), the params."""
    model = run_record["model"]
    changed = []
    if run_record["config_name"] != now["config_name"]:
        changed.append(f"configuration: {run_record['config_name']} → {now['config_name']}")
    if now["config"] is not None:
        changed += _changed(run_record["config"], now["config"], "config.")
    trained_params = {k: v for k, v in run_record["params"].items() if k != "config"}  # the name says it
    changed += _changed(trained_params, {k: v for k, v in now["params"].items() if k != "config"}, f"train.{model}.")
    return changed


def _changed(old: dict, new: dict, prefix: str) -> list[str]:
    missing = "(absent)"
    return [f"{prefix}{k}: {json.dumps(old.get(k, missing))} → {json.dumps(new.get(k, missing))}"
            for k in sorted(old.keys() | new.keys()) if old.get(k, missing) != new.get(k, missing)]


def _plain(value):
    """`value` as JSON gives it back (tuples as lists), so a record compares equal to its own reading."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _like(template, value):
    """A JSON value in the type of the configuration's own (tuples come back from JSON as lists)."""
    if isinstance(template, tuple) and isinstance(value, list):
        return tuple(value)
    return value
