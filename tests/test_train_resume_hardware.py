"""Resuming on other hardware: another number of processes, a GPU run of a CPU run's state."""
import pytest
import torch

from train.checkpoint import rng_state
from train.data import ShardLoader
from train.loop import load_scaler_state, resume_streams


def _state(ranks: int) -> dict:
    return {"step": 300, "loader": [{"epoch": 2 + r % 2, "batch": 7} for r in range(ranks)],
            "rng": [rng_state() for _ in range(ranks)]}


def test_the_same_number_of_processes_resumes_each_ranks_own_streams():
    loader = ShardLoader(["x.tar"], 16, 5, 2)
    torch.manual_seed(5)
    state = _state(2)
    expected = torch.rand(3)
    resume_streams(state, 1, 2, loader, seed=0)
    assert loader.state_dict() == {"epoch": 3, "batch": 7} and torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("saved, world, rank", [(1, 2, 1), (8, 1, 0), (8, 4, 3)])
def test_another_number_of_processes_starts_fresh_streams_with_a_warning(saved, world, rank):
    loader = ShardLoader(["x.tar"], 16, 5, 2)
    with pytest.warns(UserWarning, match=f"resuming a run of {saved} process\\(es\\) with {world}"):
        resume_streams(_state(saved), rank, world, loader, seed=0)
    assert loader.state_dict() == {"epoch": 4 if saved > 1 else 3, "batch": 0}  # past every saved epoch


def test_a_cpu_runs_empty_scaler_state_leaves_a_gpu_scaler_fresh():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # an enabled scaler, as on a GPU
    with pytest.raises(RuntimeError, match="empty"):
        scaler.load_state_dict({})  # what the loop did
    load_scaler_state(scaler, {})
    assert scaler.get_scale() == 1024.0
    load_scaler_state(scaler, {**scaler.state_dict(), "scale": 8.0})
    assert scaler.get_scale() == 8.0
