"""A full disk during ingest and pack: one line naming the full folder, what the stage still needs and that a rerun
continues; given room, the rerun finishes with the bytes a run on a roomy disk writes.

The small disk is a real tmpfs, mounted in a private mount namespace (`unshare`: as root, or as a user through a user
namespace), so the writes meet a real ENOSPC and nothing outside the test sees the mount."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from click.testing import CliRunner

from ingest_fixtures import encode
from pipeline.cli import main

PIPELINE = f'"{sys.executable}" -c "import sys; from pipeline.cli import main; sys.argv[0] = \'pipeline\'; main()"'
NAMESPACES = (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"])


def _namespace() -> list[str]:
    """A prefix running a command in a private mount namespace where it may mount a tmpfs."""
    for prefix in NAMESPACES[0 if os.geteuid() == 0 else 1:]:
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    raise AssertionError("cannot make a private mount namespace (`unshare --user --map-root-user --mount true` "
                         "fails): run this test as root or where unprivileged user namespaces are allowed")


def _source(folder: Path, images: int = 16) -> Path:
    """Photos of noise (they stay large as JPEGs): four image shards of four."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(images):
        (folder / f"{i:02d}.jpg").write_bytes(encode(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8), "JPEG",
                                                     quality=95))
    return folder


def _params(folder: Path) -> Path:
    params = yaml.safe_load(open("params.yaml"))
    sample = params["datasets"]["sample"]
    sample["annotate"], sample["test_size"] = [], 4  # pack copies the image shards alone: no annotator to run
    sample["overrides"]["ingest.shard_size"] = 4
    params["pack"]["workers"] = 1
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for sub in ("images", "shards")
            for p in sorted((folder / sub).iterdir()) if not p.name.startswith(".")}


def test_ingest_and_pack_on_a_full_disk_stop_in_one_line_and_rerun_to_identical_bytes(tmp_path):
    source, params = _source(tmp_path / "source"), _params(tmp_path)
    stage = ["--dataset", "sample", "--params", str(params), "--no-progress"]
    roomy = tmp_path / "roomy"
    for command in (["ingest", "--source", str(source), "--kind", "folder", "--workers", "1"], ["pack"]):
        result = CliRunner().invoke(main, [*command, *stage, "--data-dir", str(roomy)])
        assert result.exit_code == 0, result.output
    expected = _files(roomy / "sample")
    images = sum(len(b) for name, b in expected.items() if name.startswith("images/")) // 1024
    shards = sum(len(b) for name, b in expected.items() if name.startswith("shards/")) // 1024

    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    args = " ".join(f"'{a}'" for a in [*stage, "--data-dir", str(disk)])
    ingest = f"{PIPELINE} ingest --source '{source}' --kind folder --workers 1 {args}"
    script = f"""
        mount -t tmpfs -o size={images // 2}k tmpfs '{disk}' || exit 2
        {ingest} > '{out}/ingest-full' 2>&1; echo $? > '{out}/ingest-full.rc'
        mount -o remount,size={images + shards + 4096}k '{disk}' || exit 2
        {ingest} > '{out}/ingest' 2>&1 || exit 1
        mount -o remount,size=$(( $(du -sk '{disk}' | cut -f1) + {shards // 2} ))k '{disk}' || exit 2
        {PIPELINE} pack {args} > '{out}/pack-full' 2>&1; echo $? > '{out}/pack-full.rc'
        mount -o remount,size={images + shards + 4096}k '{disk}' || exit 2
        {PIPELINE} pack {args} > '{out}/pack' 2>&1 || exit 1
        cp -r '{disk}/sample' '{out}/sample' || exit 2
    """
    run = subprocess.run([*_namespace(), "sh", "-c", script], capture_output=True, text=True, timeout=300)
    reports = {name: (out / name).read_text() if (out / name).exists() else "" for name in
               ("ingest-full", "ingest", "pack-full", "pack")}
    assert run.returncode == 0, (run.stderr, reports)
    for stage_name, folder in (("ingest", "images"), ("pack", "shards")):
        lines = reports[f"{stage_name}-full"].strip().splitlines()
        assert (out / f"{stage_name}-full.rc").read_text().strip() == "1" and len(lines) == 1, lines
        assert lines[0].startswith(f"Error: no space left on the disk holding {disk}/sample/{folder} ")
        assert "more needed for the" in lines[0] and "per finished shard" in lines[0], lines[0]
        assert f"rerun `pipeline {stage_name} --dataset sample`: it keeps every finished shard" in lines[0]
    assert _files(out / "sample") == expected
