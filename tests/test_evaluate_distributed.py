"""Evaluation over two processes (gloo, CPU) with a cold reference cache and a short collective timeout: every
process embeds its own test images, so none waits while another embeds the whole split, and the report is the
one process's."""
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_evaluate import write_params
from train_shards import write_training_shards

from pipeline.commands.common import StageContext
from pipeline.params import load_params
from shardio.layout import Layout
from train import checkpoint
from train.distributed import Processes
from train.eval_plan import model_config
from train.evaluate import evaluate_run
from train.models import family

WORLD = 2
# the processes wait for each other only as long as their shares of the work differ (on 2 loaded cores: seconds),
# not for one process embedding the whole split or finishing the metrics
TIMEOUT = timedelta(seconds=60)
OUTPUTS = ["metrics.json", "report.md", "samples_all.png"]
pytestmark = pytest.mark.usefixtures("one_thread")


def _stage(root) -> StageContext:
    params = load_params(root / "params.yaml")
    return StageContext(params.for_dataset("sample"), "sample", params.profile("sample"),
                        Layout(root / "data", "sample"))


def _cold_cache(root) -> None:
    for cached in (root / "data" / "cache" / "fid").glob("*.npy"):  # the reference features
        cached.unlink()


def _evaluate(root, processes=None) -> dict[str, bytes]:
    """The report's files of an evaluation."""
    stage = _stage(root)
    written = evaluate_run(stage, "poegan", processes=processes)
    return {name: (stage.layout.evaluation("poegan") / name).read_bytes() for name in OUTPUTS} if written else {}


def _rank_main(rank, root, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=TIMEOUT)
    torch.set_num_threads(1)
    try:
        out[rank] = _evaluate(root, Processes(rank, WORLD, torch.device("cpu")))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """A dataset folder with 4 train and 4 test images and a snapshot of an untrained tiny PoE-GAN."""
    root = tmp_path_factory.mktemp("evaluate-distributed")
    shards = root / "data" / "sample" / "shards"
    write_training_shards(shards, images=4, per_shard=4, short_side=36)
    write_training_shards(shards, images=4, per_shard=2, short_side=36, split="test", seed=1)
    # 2 images a batch: each process generates one of the two batches. KID needs the reference features (and no
    # 2048 x 2048 eigendecomposition, FID's seconds)
    write_params(root / "params.yaml", inception_weights="random", batch_size=2, conditions=["unconditional", "all"],
                 metrics=["kid"])
    stage = _stage(root)
    torch.manual_seed(0)
    G = family("poegan").generator(model_config(stage, "poegan"), 182)
    checkpoint.save(checkpoint.snapshot_path(stage.layout.training("poegan"), 2), {"G_ema": G.state_dict()})
    return root


def test_two_processes_with_a_cold_reference_cache_finish_within_a_short_timeout_with_one_process_report(
        evaluation, tmp_path):
    _cold_cache(evaluation)
    one = _evaluate(evaluation)
    _cold_cache(evaluation)
    out = mp.Manager().dict()
    mp.spawn(_rank_main, args=(evaluation, str(tmp_path / "init"), out), nprocs=WORLD)
    assert out[0] == one and out[1] == {}
