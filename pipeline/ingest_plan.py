"""Ingest's plan, a pure function of the scan, computed on Arrow columns (no Python object per image): the first
source name (sorted) keeps a key and its duplicates are rejected as `duplicate` (detail: the kept source);
sources without their own split are split by key (`test_count`: the smallest keys go to test); each split's
keys, in key order, are cut into shards of `shard_size`."""
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardio.layout import shard_name

KEY_HEX = 24
REJECTS_SCHEMA = pa.schema([("source", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
                            ("sha256", pa.string()), ("stamp", pa.string()), ("provided_sha", pa.string())])


class SplitError(ValueError):
    """A test_size that leaves nothing to train on."""


@dataclass(frozen=True)
class PlannedShard:
    """One shard of the plan: its name and split, and its rows' range in `Plan.order`."""

    name: str
    split: str
    start: int
    stop: int


@dataclass
class Plan:
    """Accepted rows of the scan in shard order, the shards cut from them, and the rows turned away."""

    order: pa.Array          # scan row of each accepted image, in shard order
    shards: list[PlannedShard]
    rejects: pa.Table        # REJECTS_SCHEMA: listing problems, header verdicts, duplicates


def test_count(unsplit: int, test_size: float) -> int:
    """How many of `unsplit` images go to test: a count >= 1, or a fraction < 1 of them, rounded. A count that
    leaves none to train on is a SplitError naming what to set."""
    count = round(test_size * unsplit) if test_size < 1 else int(test_size)
    if unsplit and count >= unsplit:
        given = f"a count of {int(test_size)}" if test_size >= 1 else f"the fraction {test_size}"
        raise SplitError(f"test_size is {given}, which takes all {unsplit} images without a split of their own for "
                         "test and leaves none to train on: set the profile's test_size to a fraction (e.g. 0.1) "
                         f"or a count below {unsplit}")
    return min(count, unsplit)


def make_plan(scan: pa.Table, test_size: float, shard_size: int) -> Plan:
    """Deduplicate, split and shard the scan (SCAN_SCHEMA rows); the same scan always gives the same plan."""
    row = pa.array(np.arange(len(scan), dtype=np.int64))
    accepted = pc.is_valid(scan["sha256"])
    turned_away = scan.filter(pc.invert(accepted))
    scanned = pa.table({"row": row, "source": scan["source"], "key": pc.utf8_slice_codeunits(scan["sha256"], 0,
                        KEY_HEX), "split": scan["split"]}).filter(accepted)
    scanned = scanned.sort_by([("key", "ascending"), ("source", "ascending"), ("row", "ascending")])
    keys = scanned["key"]
    first = np.ones(len(scanned), bool)
    if len(scanned) > 1:
        first[1:] = pc.not_equal(keys.slice(1), keys.slice(0, len(scanned) - 1)).to_numpy(zero_copy_only=False)
    kept, copies = scanned.filter(pa.array(first)), scanned.filter(pa.array(~first))
    keeper = np.cumsum(first)[~first] - 1  # the kept row of each copy's key (the scan is sorted by key)
    duplicates = scan.take(copies["row"]).select(["source", "sha256", "stamp", "provided_sha"])
    duplicates = duplicates.append_column("reason", pa.array(["duplicate"] * len(duplicates), pa.string())) \
                           .append_column("detail", kept["source"].take(pa.array(keeper, pa.int64())))
    rejects = pa.concat_tables([turned_away.select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA),
                                duplicates.select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA)])

    unsplit = pc.equal(kept["split"], "").to_numpy(zero_copy_only=False)
    test = np.zeros(len(kept), bool)
    test[np.flatnonzero(unsplit)[:test_count(int(unsplit.sum()), test_size)]] = True  # kept is in key order
    split = pc.if_else(pa.array(unsplit), pc.if_else(pa.array(test), "test", "train"), kept["split"])
    kept = kept.set_column(kept.schema.get_field_index("split"), "split", split)
    kept = kept.sort_by([("split", "ascending"), ("key", "ascending")])
    shards, start = [], 0
    for entry in sorted(pc.value_counts(kept["split"]).to_pylist(), key=lambda e: e["values"]):
        for index, first_row in enumerate(range(0, entry["counts"], shard_size)):
            stop = min(first_row + shard_size, entry["counts"])
            shards.append(PlannedShard(shard_name(entry["values"], index), entry["values"], start + first_row,
                                       start + stop))
        start += entry["counts"]
    return Plan(order=kept["row"].combine_chunks(), shards=shards, rejects=rejects)
