"""Under data parallelism (two CPU processes, gloo) the objective is the global batch's: contrastive losses see
every rank's samples with the single-process gradient, and the KL rebalancing weights are the same on every
rank."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from train.checkpoint import load
from train.distributed import gather_batch
from train.families.poegan.kl_balance import KLBalancer
from train.loop import _average_gradients
from train.families.poegan.loss import contrastive

WORLD = 2
pytestmark = pytest.mark.usefixtures("one_thread")


def _contrastive_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(6, 4), torch.randn(8, 6), torch.randn(8, 4), torch.tensor(0.3).log()


def _rank_main(rank, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        model, x, keys, log_t = _contrastive_model()
        rows = slice(rank * 4, rank * 4 + 4)  # this rank's half of the global batch
        loss = contrastive(gather_batch(model(x[rows])), gather_batch(keys[rows]), log_t)
        loss.backward()
        _average_gradients(model, WORLD)
        used, unused, on_one = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
        (used * (rank + 1)).sum().backward()
        if rank == 1:  # used by one rank only: rank 0 must still take the average
            (on_one * 3).sum().backward()
        _average_gradients(torch.nn.ParameterList([used, unused, on_one]), WORLD)
        balancer = KLBalancer([4, 8])
        weights = balancer.update(torch.tensor([1.0 + 2 * rank, 8.0]))  # each rank's batch has its own KL
        out[rank] = {"loss": loss.item(), "grad": model.weight.grad.clone(), "kl_weights": weights.clone(),
                     "used_grad": used.grad.clone(), "unused_grad": unused.grad,
                     "on_one_grad": on_one.grad.clone()}
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = mp.Manager().dict()
    mp.spawn(_rank_main, args=(str(tmp_path_factory.mktemp("dist") / "init"), out), nprocs=WORLD)
    return dict(out)


def test_contrastive_loss_and_gradient_over_two_ranks_equal_one_process_on_the_global_batch(two_ranks):
    model, x, keys, log_t = _contrastive_model()
    loss = contrastive(model(x), keys, log_t)
    loss.backward()
    for rank in range(WORLD):
        assert two_ranks[rank]["loss"] == pytest.approx(loss.item(), rel=1e-6)
        assert torch.allclose(two_ranks[rank]["grad"], model.weight.grad, rtol=1e-5, atol=1e-7)


def test_kl_rebalancing_weights_are_the_same_on_every_rank_and_use_the_mean_kl(two_ranks):
    single = KLBalancer([4, 8]).update(torch.tensor([2.0, 8.0]))  # the mean of the ranks' KL
    for rank in range(WORLD):
        assert torch.allclose(two_ranks[rank]["kl_weights"], single)


def _run(args, tmp_path):
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)]), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow  # ~30-40 s on 2 cores: two short runs
def test_two_torchrun_processes_train_to_the_weights_of_one_process_on_the_same_global_batch(tmp_path):
    steps, script = 3, str(Path(__file__).resolve().parent / "ddp_run.py")  # step 0 also runs R1
    _run([script, "one", str(steps)], tmp_path)
    _run(["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}", script, "two", str(steps)],
         tmp_path)
    one, two = (load(tmp_path / run / f"network-snapshot-{steps:06d}.pt") for run in ("one", "two"))
    for net in ("G", "D", "G_ema"):
        for name, p in one[net].items():
            assert torch.allclose(two[net][name], p, rtol=1e-4, atol=1e-5), (net, name)


def test_gradients_are_averaged_and_a_parameter_no_rank_used_keeps_none(two_ranks):
    # a zero gradient would still advance Adam's step count and decay its second moment: unlike one process
    for rank in range(WORLD):
        assert two_ranks[rank]["used_grad"].tolist() == [1.5, 1.5]
        assert two_ranks[rank]["unused_grad"] is None
        assert two_ranks[rank]["on_one_grad"].tolist() == [1.5, 1.5]
