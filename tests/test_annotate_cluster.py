"""`pipeline annotate` on a two-node local Ray cluster: shards spread over both nodes, and losing a node
mid-job still ends with the full, byte-identical output. Slow: it starts its own multi-node cluster."""
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from test_annotate_stage import annotate, in_background, make_dataset, shard_bytes
from shardio.shards import read_stats

ONLY = ["sketch"]
PER_SHARD, SIZE = [2] * 8, (320, 240)


@pytest.fixture
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_two_nodes_share_the_shards_and_losing_one_loses_nothing(two_nodes, tmp_path):
    cluster, worker = two_nodes
    reference, _, params = make_dataset(tmp_path / "reference", PER_SHARD, SIZE)
    code, output = annotate(reference, params, "--workers", "2", only=ONLY)
    assert code == 0, output
    nodes = {read_stats(p)["worker"]["node"] for p in sorted(reference.annotations("sketch").glob("*.tar"))}
    assert len(nodes) == 2  # both nodes annotated shards

    layout, _, params = make_dataset(tmp_path / "lossy", PER_SHARD, SIZE)
    done = in_background(lambda: annotate(layout, params, "--workers", "2", only=ONLY))
    deadline = time.monotonic() + 120
    while not list(layout.annotations("sketch").glob("*.stats.json")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cluster.remove_node(worker)
    assert done.wait(600)
    code, output = done.result
    assert code == 0 and "worker(s) replaced" in output, output
    assert shard_bytes(layout, ONLY) == shard_bytes(reference, ONLY)
    assert len(list(layout.annotations("sketch").glob("*.stats.json"))) == len(PER_SHARD)
