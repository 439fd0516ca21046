"""The evaluation report: flat metrics.json, the markdown table per condition, sample grids and PNG plots."""
import json

import numpy as np
import pytest
from PIL import Image

from train.report import ReportError, flat_metrics, image_grid, read_log, write_report

RESULTS = {
    "seg": {"fid": 30.5, "kid": 0.02, "seg_miou": 0.41, "seg_pixel_accuracy": 0.73},
    "unconditional": {"fid": 52.25, "kid": 0.05},
    "all": {"fid": 21.0, "kid": 0.01, "seg_miou": 0.5, "seg_pixel_accuracy": 0.8, "clip_score": float("nan")},
}


def write_log(path, steps=5):
    lines = [json.dumps({"step": s, "loss_g": 2.0 / (s + 1), "loss_d": 1.0 + 0.1 * s, "lr": 0.002, "note": "x"})
             for s in range(steps)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_metrics_json_is_flat_and_dvc_readable(tmp_path):
    write_report(tmp_path, RESULTS)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seg/seg_miou"] == 0.41 and metrics["unconditional/fid"] == 52.25
    assert metrics["all/clip_score"] is None  # NaN is not valid JSON for DVC
    assert all(not isinstance(v, dict) for v in metrics.values()) and len(metrics) == 11
    assert flat_metrics({"text": {"fid": 1}}) == {"text/fid": 1.0}


def test_the_protocol_goes_beside_the_numbers_and_into_the_report(tmp_path):
    protocol = {"version": 1, "model": "inade", "dataset": "coco", "resolution": 256, "snapshot": None,
                "images": 5000, "reference": {"split": "train", "images": 50000}, "seed": 0,
                "rows": [{"name": "seg", "condition": "seg", "metrics": ["fid"]}],
                "metrics": [{"name": "fid", "keys": ["fid"], "network": "inception", "weights": "w"}],
                "seeding": ["noise of test batch i: (0, i)"], "notes": ["a note"]}
    write_report(tmp_path, RESULTS, protocol=protocol)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics.pop("protocol") == protocol and metrics == flat_metrics(RESULTS)  # the numbers as before
    report = (tmp_path / "report.md").read_text()
    assert "## Protocol\n\n- model: inade on coco at 256 px, snapshot none yet\n" in report
    assert "- reference set (FID/KID): 50000 train images at 256 px\n" in report and "- a note\n" in report
    assert "- fid: inception (weights w)\n" in report and "- rows (condition: metrics): seg: fid\n" in report


def test_report_has_the_table_grids_and_plots(tmp_path):
    samples = {"seg": np.full((5, 16, 16, 3), 200, np.uint8), "unconditional": np.zeros((3, 16, 16, 3), np.uint8)}
    written = write_report(tmp_path, RESULTS, samples=samples, log=write_log(tmp_path / "log.jsonl"), title="poegan")
    report = (tmp_path / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| condition | fid | kid |")
    # rows follow the supplement's order (unconditional, ..., seg, ..., all); unmeasured cells are dashes
    assert rows[1].startswith("| --- |")
    assert [r.split(" | ")[0][2:] for r in rows[2:]] == ["unconditional", "seg", "all"]
    header = rows[0].strip("| ").split(" | ")
    unconditional = dict(zip(header, rows[2].strip("| ").split(" | ")))
    assert unconditional["fid"] == "52.25" and unconditional["seg_miou"] == "—"
    for name in ["fid_per_condition.png", "training_curves.png", "samples_seg.png", "samples_unconditional.png"]:
        assert f"]({name})" in report
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.size[0] > 0
    with Image.open(written["samples_seg"]) as grid:
        assert grid.size == (5 * 16, 16)


def test_image_grid_tiles_row_by_row():
    images = np.stack([np.full((2, 3, 3), i, np.uint8) for i in range(5)])
    grid = image_grid(images, columns=2)
    assert grid.shape == (3 * 2, 2 * 3, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 1 and grid[2, 0, 0] == 2 and grid[4, 0, 0] == 4
    assert (grid[4:, 3:] == 0).all()  # the short last row stays black
    with pytest.raises(ReportError, match="uint8 images"):
        image_grid(images.astype(np.float32))


def test_training_log_errors_name_the_line(tmp_path):
    log = write_log(tmp_path / "log.jsonl", steps=3)
    assert [r["step"] for r in read_log(log)] == [0, 1, 2]
    log.write_text(log.read_text() + "{not json\n")
    with pytest.raises(ReportError, match=r"log.jsonl:4: not JSON"):
        read_log(log)
    log.write_text('{"loss": 1.0}\n')
    with pytest.raises(ReportError, match=r"log.jsonl:1: expected an object with an integer 'step'"):
        read_log(log)


def test_report_without_fid_or_log_skips_those_plots(tmp_path):
    written = write_report(tmp_path, {"text": {"clip_score": 28.0}}, log=tmp_path / "missing.jsonl")
    assert set(written) == {"metrics", "report"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"text/clip_score": 28.0}
    with pytest.raises(ReportError, match="no results"):
        write_report(tmp_path, {})


def test_scores_of_random_weight_networks_are_marked_in_the_json_and_where_they_stand(tmp_path):
    flags = {"fid": ["inception"], "kid": ["inception"], "seg_miou": ["seg annotator"], "clip_score": ["clip annotator"],
             "lpips_diversity": ["alexnet"]}  # lpips was not measured: no flag for it
    write_report(tmp_path, RESULTS, random_weights=flags)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # strings beside the numbers: `dvc metrics show` lists them as columns
    assert {k: v for k, v in metrics.items() if k.startswith("random_weights/")} == {
        "random_weights/fid": "inception", "random_weights/kid": "inception", "random_weights/seg_miou": "seg annotator",
        "random_weights/clip_score": "clip annotator"}
    assert metrics["seg/fid"] == 30.5  # the numbers themselves unchanged
    report = (tmp_path / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    header = rows[0].strip("| ").split(" | ")
    seg = dict(zip(header, rows[3].strip("| ").split(" | ")))
    assert seg["fid"] == "30.5†" and seg["kid"] == "0.02†" and seg["seg_miou"] == "0.41†"
    assert seg["seg_pixel_accuracy"] == "0.73" and seg["clip_score"] == "—"
    assert ("† Computed by networks with random weights, not meaningful and not comparable to published numbers: "
            "clip_score by clip annotator; fid, kid by inception; seg_miou by seg annotator.") in report
    # without random weights nothing is marked
    write_report(tmp_path, RESULTS)
    assert "†" not in (tmp_path / "report.md").read_text()
    assert not any(k.startswith("random_weights") for k in json.loads((tmp_path / "metrics.json").read_text()))


def test_training_curves_are_the_same_for_runs_that_differ_only_in_wall_clock(tmp_path):
    # a resumed run's log restarts its clock (sec, data_sec): the plot of the same training must not change with it
    plots = []
    for run, speed in (("a", 1.0), ("b", 3.7)):
        log = tmp_path / run / "log.jsonl"
        log.parent.mkdir()
        log.write_text("".join(json.dumps({"step": s, "loss_g": 2.0 / s, "sec": speed * s, "data_sec": 0.1 * speed * s})
                               + "\n" for s in range(1, 6)))
        plots.append(write_report(tmp_path / run, RESULTS, log=log)["training_curves"].read_bytes())
    assert plots[0] == plots[1]
