"""Ingest's plan over a scan of many small batches (the real scan's batches hold 4,096 rows; these hold 7, so
every duplicate, split and shard crosses batch boundaries), against the contract spelled out row by row: the
first source name, then the first row, keeps a key; sources without a split of their own are split by key, the
smallest to test; each split's keys in key order, cut into shards."""
import hashlib
import random

import pyarrow as pa

from pipeline import ingest_plan
from pipeline.ingest_plan import KEY_HEX, make_plan
from pipeline.ingest_scan import SCAN_SCHEMA, MappedTable, ScanRows
from shardio.layout import shard_name


def scan_rows(count: int, seed: int = 0) -> list[dict]:
    """Scan rows: about a fifth repeating an earlier image under another (or the same) source name, some turned
    away at the header check, a few with a split of their own."""
    rng, rows, hashes = random.Random(seed), [], []
    for row in range(count):
        source = f"src/{rng.randrange(10**6):06d}.jpg"
        if rng.random() < 0.1:
            rows.append(dict(source=source, item="{}", split="", stamp="s", sha256=None, provided_sha=None,
                             reason="too_small", detail="8 px"))
            continue
        sha = rng.choice(hashes) if hashes and rng.random() < 0.2 else hashlib.sha256(b"%d" % row).hexdigest()
        hashes.append(sha)
        split = rng.choice(["val", "train"]) if rng.random() < 0.1 else ""
        rows.append(dict(source=source, item="{}", split=split, stamp=f"stamp{row}", sha256=sha,
                         provided_sha=f"p{row}", reason=None, detail=None))
    return rows


def expected_plan(rows: list[dict], test_size: float, shard_size: int) -> tuple[list[int], list, list[tuple]]:
    """The contract, row by row: (shard order of the kept rows, shards as (name, split, count), duplicates as
    (source, kept source))."""
    accepted = sorted((row["sha256"][:KEY_HEX], row["source"], index) for index, row in enumerate(rows)
                      if row["sha256"] is not None)
    kept, duplicates = {}, []
    for key, source, index in accepted:
        if key in kept:
            duplicates.append((source, rows[kept[key]]["source"]))
        else:
            kept[key] = index
    unsplit = [key for key in kept if rows[kept[key]]["split"] == ""]  # in key order
    test = set(unsplit[:ingest_plan.test_count(len(unsplit), test_size)])
    split = {key: rows[index]["split"] or ("test" if key in test else "train") for key, index in kept.items()}
    order = sorted(kept, key=lambda key: (split[key], key))
    shards = []
    for name in sorted(set(split.values())):
        keys = [key for key in order if split[key] == name]
        shards += [(shard_name(name, i // shard_size), name, len(keys[i:i + shard_size]))
                   for i in range(0, len(keys), shard_size)]
    return [kept[key] for key in order], shards, duplicates


def mapped_scan(rows: list[dict], path, batch: int) -> ScanRows:
    table = pa.Table.from_pylist(rows, SCAN_SCHEMA)
    with pa.ipc.new_file(str(path), SCAN_SCHEMA) as writer:
        for start in range(0, len(table), batch):
            writer.write_table(table.slice(start, batch))
    return ScanRows(MappedTable(path))


def test_plan_follows_the_contract_across_batches(tmp_path):
    rows = scan_rows(400)
    plan = make_plan(mapped_scan(rows, tmp_path / "scan.arrow", 7), test_size=0.2, shard_size=16)
    order, shards, duplicates = expected_plan(rows, 0.2, 16)
    assert duplicates and {"val", "train", "test"} <= {split for _, split, _ in shards}
    assert plan.order.to_pylist() == order
    assert [(s.name, s.split, s.stop - s.start) for s in plan.shards] == shards
    assert [s.start for s in plan.shards] == [sum(count for *_, count in shards[:i]) for i in range(len(shards))]
    turned_away = [(row["source"], row["reason"], row["detail"]) for row in rows if row["sha256"] is None]
    rejects = plan.rejects.to_pylist()
    assert [(r["source"], r["reason"], r["detail"]) for r in rejects] == \
        turned_away + [(source, "duplicate", kept) for source, kept in duplicates]


def test_the_plan_does_not_depend_on_how_the_scan_is_batched(tmp_path):
    rows = scan_rows(300, seed=1)
    small = make_plan(mapped_scan(rows, tmp_path / "small.arrow", 5), 0.1, 10)
    whole = make_plan(mapped_scan(rows, tmp_path / "whole.arrow", len(rows)), 0.1, 10)
    assert small.order.equals(whole.order) and small.shards == whole.shards and small.rejects.equals(whole.rejects)


def test_an_empty_scan_plans_nothing(tmp_path):
    plan = make_plan(mapped_scan([], tmp_path / "empty.arrow", 7), 0.1, 10)
    assert len(plan.order) == 0 and plan.shards == [] and len(plan.rejects) == 0
