"""The built-in sample, ingested for real, then scaled up for the annotate and pack benchmarks: every sample
copied `copies` times under new keys (same bytes) into image shards of `shard_size`, so workers stay busy."""
import hashlib
from pathlib import Path

from pipeline.ingest import ingest
from pipeline.layout import Layout, shard_name
from pipeline.params.datasets import SourceParams
from pipeline.params.stages import IngestParams, SampleParams
from pipeline.sample import write_sample
from pipeline.shards import fingerprint, read_shard, shard_writer, write_stats


def scaled_image_shards(root: Path, copies: int, short_side: int, shard_size: int) -> Layout:
    """Image shards of the sample at `short_side` px, `copies` times over, under root/data/bench/images."""
    write_sample(root / "raw" / "sample", SampleParams(), progress=False)
    ingested = Layout(root / "ingested", "sample")
    ingest(ingested, IngestParams(max_short_side=short_side), SourceParams(kind="sample", path=str(root / "raw" / "sample")),
           0.2, workers=1, progress=False)
    originals = [s for shard in sorted(ingested.images.glob("*.tar")) for s in read_shard(shard)]
    samples = [(copy, key, sample) for copy in range(copies) for key, sample in originals]
    layout = Layout(root / "data", "bench")
    for index in range(0, len(samples), shard_size):
        path = layout.images / shard_name("train", index // shard_size)
        chunk = samples[index:index + shard_size]
        with shard_writer(path) as writer:
            for copy, key, sample in chunk:
                writer.write({**sample, "__key__": hashlib.sha256(f"{key}-{copy}".encode()).hexdigest()[:24]})
        write_stats(path, {"fingerprint": fingerprint("bench", index), "count": len(chunk)})
    return layout
