"""Ingest's plan, a pure function of the scan, computed on numbers (no Python object per image): the first
source name (sorted) keeps a key and its duplicates are rejected as `duplicate` (detail: the kept source);
sources without their own split are split by key (`test_count`: the smallest keys go to test); each split's
keys, in key order, are cut into shards of `shard_size`. It holds about 50 bytes per accepted image, its row,
key and split as numbers; the scan stays on disk."""
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .ingest_scan import ScanRows
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


def make_plan(scan: ScanRows, test_size: float, shard_size: int) -> Plan:
    """Deduplicate, split and shard the scan (SCAN_SCHEMA rows); the same scan always gives the same plan."""
    rows, high, low, split, names, turned_away = _read(scan)
    order = np.lexsort((rows, low, high))
    rows, high, low, split = rows[order], high[order], low[order], split[order]
    first = np.ones(len(rows), bool)
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    group = np.cumsum(first) - 1
    shared = ~first  # the rows of a key that more than one row has
    shared[:-1] |= ~first[1:]
    if shared.any():  # the first source name, then the first row, keeps a key
        at = np.flatnonzero(shared)
        members = pa.table({"group": group[at], "source": scan.table(rows[at], ["source"])["source"], "at": at})
        moved = members.sort_by([("group", "ascending"), ("source", "ascending"), ("at", "ascending")])["at"]
        rows[at], split[at] = rows[moved.to_numpy()], split[moved.to_numpy()]
    kept, kept_split = rows[first], split[first]
    copies, keepers = rows[~first], kept[group[~first]]
    duplicates = scan.table(copies, ["source", "sha256", "stamp", "provided_sha"])
    duplicates = duplicates.append_column("reason", pa.repeat(pa.scalar("duplicate"), len(copies))) \
                           .append_column("detail", scan.table(keepers, ["source"])["source"])
    rejects = pa.concat_tables([turned_away, duplicates.select(REJECTS_SCHEMA.names)
                                .cast(REJECTS_SCHEMA)])
    values, final = _splits(kept_split, names, test_size)
    order = np.argsort(final, kind="stable")  # kept is in key order: each split's keys stay in key order
    shards, start = [], 0
    for value, count in zip(values, np.bincount(final, minlength=len(values)).tolist()):
        for index, first_row in enumerate(range(0, count, shard_size)):
            shards.append(PlannedShard(shard_name(value, index), value, start + first_row,
                                       start + min(first_row + shard_size, count)))
        start += count
    return Plan(order=pa.array(kept[order]), shards=shards, rejects=rejects)


def _read(scan: ScanRows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], pa.Table]:
    """In one pass over the scan: the row numbers of its accepted images (those with a sha256), in scan order;
    their keys as two integers, whose order is the keys' hex order; their splits as indices into the split names;
    those names; and the rows turned away before hashing (REJECTS_SCHEMA)."""
    rows, high, low, split, names, turned_away = [], [], [], [], {}, []
    for batch, start in zip(scan.each_batch(), scan.starts.tolist()):
        valid = pc.is_valid(batch["sha256"])
        rows.append(start + np.flatnonzero(valid.to_numpy(zero_copy_only=False)))
        turned_away.append(batch.filter(pc.invert(valid)).select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA))
        batch = batch.filter(valid)
        key = pc.utf8_slice_codeunits(batch["sha256"], 0, KEY_HEX).cast(pa.binary(KEY_HEX))
        hex_digits = key.buffers()[1].to_pybytes()[key.offset * KEY_HEX:(key.offset + len(key)) * KEY_HEX]
        numbers = np.frombuffer(bytes.fromhex(hex_digits.decode()), [("high", ">u8"), ("low", ">u4")])
        high.append(numbers["high"].astype(np.uint64))
        low.append(numbers["low"].astype(np.uint32))
        encoded = pc.dictionary_encode(batch["split"])
        code = np.array([names.setdefault(name, len(names)) for name in encoded.dictionary.to_pylist()], np.int32)
        split.append(code[encoded.indices.to_numpy(zero_copy_only=False)])
    joined = [np.concatenate(parts) if parts else np.zeros(0, dtype) for parts, dtype in
              ((rows, np.int64), (high, np.uint64), (low, np.uint32), (split, np.int32))]
    return *joined, list(names), pa.Table.from_batches(turned_away, REJECTS_SCHEMA)


def _splits(split: np.ndarray, names: list[str], test_size: float) -> tuple[list[str], np.ndarray]:
    """The kept images' split names, sorted, and each image's split as an index into them: its source's own,
    else test for the first `test_count` of those without one and train for the rest (the kept are in key order)."""
    unsplit = split == names.index("") if "" in names else np.zeros(len(split), bool)
    own = {names[code] for code in np.unique(split[~unsplit]).tolist()}
    values = sorted(own | ({"train", "test"} if unsplit.any() else set()))
    final = np.array([values.index(name) if name in values else -1 for name in names], np.int32)[split]
    if unsplit.any():
        where = np.flatnonzero(unsplit)
        final[where] = values.index("train")
        final[where[:test_count(len(where), test_size)]] = values.index("test")
    return values, final
