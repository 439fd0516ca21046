"""What a training run keeps on disk (train/checkpoint.py): the newest saves whole, weight snapshots on their sparser
cadence, nothing deleted before a newer save is on disk, exactly that again after a kill, and never more disk than
the dry run's plan says."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_train_loop import _spec, _train, shards  # noqa: F401 - shards: the module's tiny training shards

from train import checkpoint
from train.checkpoint import complete_saves, prune, save_due, snapshot_path, state_path
from train.disk_plan import DiskPlan

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(run: Path, step: int) -> None:
    """A save as the loop writes it (weights, then the training state), with tiny payloads."""
    checkpoint.save(snapshot_path(run, step), {"G": {"w": torch.full((2,), float(step))}})
    checkpoint.save(state_path(run, step), {"step": step})


def _on_disk(run: Path) -> tuple[set[int], set[int], set[str]]:
    """The steps of the training states and of the weight snapshots in `run`, and every other file's name."""
    names = {p.name for p in run.iterdir()}
    states = {int(m[1]) for n in names if (m := checkpoint.STATE_RE.match(n))}
    snapshots = {int(m[1]) for n in names if (m := checkpoint.SNAPSHOT_RE.match(n))}
    return states, snapshots, names - {state_path(run, s).name for s in states} - \
        {snapshot_path(run, s).name for s in snapshots}


def _promised(saved: list[int], keep: int, every: int) -> tuple[set[int], set[int]]:
    """The states and snapshots retention promises after the saves `saved`."""
    whole = set(saved[-keep:])
    return whole, whole | {s for s in saved if s % every == 0}


def test_each_prune_keeps_the_newest_saves_whole_and_the_sparser_snapshots(tmp_path):
    saved = []
    for step in range(1, 12):
        if save_due(step, 11, snapshot_every=2, keep_snapshot_every=5):
            _save(tmp_path, step)
            saved.append(step)
            prune(tmp_path, 2, 5)
            states, snapshots, others = _on_disk(tmp_path)
            assert (states, snapshots, others) == (*_promised(saved, 2, 5), set()), step
    assert saved == [2, 4, 5, 6, 8, 10, 11]  # every 2nd step, every 5th and the last
    assert complete_saves(tmp_path) == [10, 11]


def test_a_killed_save_leaves_partial_files_the_next_prune_removes(tmp_path):
    for step in (1, 2):
        _save(tmp_path, step)
    checkpoint.save(snapshot_path(tmp_path, 3), {"G": {}})  # killed before step 3's training state was written
    (tmp_path / ".training-state-000003.pt.tmp-4242").write_bytes(b"half a state")
    (tmp_path / "log.jsonl").write_text("")
    assert checkpoint.latest_state(tmp_path) == 2
    assert prune(tmp_path, 1, None) == ["training-state-000001.pt", ".training-state-000003.pt.tmp-4242"]
    assert _on_disk(tmp_path) == ({2}, {1, 2, 3}, {"log.jsonl"})  # keep_snapshot_every None: every snapshot
    prune(tmp_path, 1, 10)
    assert _on_disk(tmp_path) == ({2}, {2}, {"log.jsonl"})


def test_a_kill_at_any_point_of_a_prune_keeps_the_promise_and_the_next_prune_completes_it(tmp_path, monkeypatch):
    class Killed(BaseException):
        pass

    def saves(run):
        for step in range(1, 8):
            _save(run, step)

    saves(tmp_path / "count")
    deletions = len(prune(tmp_path / "count", 2, 3))
    promised = _promised(list(range(1, 8)), 2, 3)
    unlink = Path.unlink
    for kill_after in range(deletions):
        run = tmp_path / f"killed-after-{kill_after}"
        saves(run)
        done = []

        def dying_unlink(path, missing_ok=False):
            if len(done) == kill_after:
                raise Killed
            done.append(path)
            unlink(path, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", dying_unlink)
        with pytest.raises(Killed):
            prune(run, 2, 3)
        monkeypatch.setattr(Path, "unlink", unlink)
        states, snapshots, _ = _on_disk(run)
        assert states >= promised[0] and snapshots >= promised[1] and complete_saves(run)[-2:] == [6, 7]
        assert all(checkpoint.load(snapshot_path(run, s)) for s in promised[1])
        prune(run, 2, 3)
        assert _on_disk(run) == (*promised, set())


def test_the_folder_never_holds_more_than_the_plans_most_disk(tmp_path):
    snapshot, state, steps = 300, 500, 61
    plan = DiskPlan(steps, snapshot_every=4, keep_states=2, keep_snapshot_every=10, sample_every=steps,
                    tensorboard=False, snapshot=snapshot, state=state, grid=0)
    most = 0
    for step in range(1, steps + 1):
        if save_due(step, steps, plan.snapshot_every, plan.keep_snapshot_every):
            snapshot_path(tmp_path, step).write_bytes(b"w" * snapshot)
            state_path(tmp_path, step).write_bytes(b"s" * state)
            most = max(most, sum(p.stat().st_size for p in tmp_path.iterdir()))
            prune(tmp_path, plan.keep_states, plan.keep_snapshot_every)
    assert plan.most() - snapshot <= most <= plan.most()  # the bound counts one kept snapshot twice at most
    kept = {s for s in _on_disk(tmp_path)[1] if s % plan.keep_snapshot_every == 0}
    assert len(kept) == plan.kept_snapshots == steps // plan.keep_snapshot_every


def test_a_run_killed_between_writing_a_save_and_pruning_resumes_to_exactly_what_retention_promises(
        shards, tmp_path, monkeypatch):
    class Killed(BaseException):  # not an Exception: nothing in the loop may catch it
        pass

    prune = checkpoint.prune

    def killed_before_pruning(folder, *args):
        if checkpoint.latest_state(folder) == 4:  # step 4's save is written; the older ones are still there
            raise Killed
        return prune(folder, *args)

    spec = replace(_spec(tmp_path, shards, 6), snapshot_every=1, keep_states=2, keep_snapshot_every=3)
    monkeypatch.setattr(checkpoint, "prune", killed_before_pruning)  # the loop's own call, at its own place
    with pytest.raises(Killed):
        _train(spec)
    monkeypatch.setattr(checkpoint, "prune", prune)
    states, snapshots, _ = _on_disk(tmp_path)  # the promise after step 3 holds, and step 4's save with it
    assert (states, snapshots) == ({2, 3, 4}, {2, 3, 4}) and checkpoint.latest_state(tmp_path) == 4
    assert [r["step"] for r in _train(spec)] == [5, 6]  # resumed from step 4
    states, snapshots, others = _on_disk(tmp_path)
    assert (states, snapshots) == _promised(list(range(1, 7)), 2, 3) == ({5, 6}, {3, 5, 6})
    assert not [name for name in others if checkpoint.PARTIAL_RE.match(name)]
