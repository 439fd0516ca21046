"""Several processes: rank coordination on two CPU processes (gloo) -- rank 0 alone decides, every rank gets its
answer or its error, each process leaves the group at the end -- and SPADE's batch norm synchronised across GPUs."""
import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from train import distributed
from train.loop import synchronised_batch_norm
from train.models import family


class Refused(RuntimeError):
    pass


def _refuse():
    raise Refused("run folder holds another run")


def _rank(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    processes = distributed.start()
    ran = []
    value = distributed.on_rank0(lambda: ran.append(processes.rank) or f"decided by rank {processes.rank}", processes)
    try:
        distributed.on_rank0(_refuse, processes)
        error = None
    except Refused as err:
        error = str(err)
    distributed.stop()
    with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
        json.dump({"rank": processes.rank, "ran": ran, "value": value, "error": error,
                   "left": not dist.is_initialized()}, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_zero_decides_and_every_rank_gets_its_answer_or_its_error(tmp_path):
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in results] == [0, 1]
    assert [r["ran"] for r in results] == [[0], []]  # only rank 0 ran it ...
    assert {r["value"] for r in results} == {"decided by rank 0"}  # ... and both ranks have its result
    assert {r["error"] for r in results} == {"run folder holds another run"}  # rank 0's error stops rank 1 too
    assert all(r["left"] for r in results)


def test_spade_batch_norm_is_synchronised_across_gpus_only():
    G, _ = family("spade-seg").networks(family("spade-seg").config("tiny"), 5)
    norms = [type(m) for m in synchronised_batch_norm(G, 2, torch.device("cuda")).modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and set(norms) == {nn.SyncBatchNorm}
    G, _ = family("spade-seg").networks(family("spade-seg").config("tiny"), 5)
    for world, device in ((1, "cuda"), (2, "cpu")):
        converted = synchronised_batch_norm(G, world, torch.device(device))
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in converted.modules())
