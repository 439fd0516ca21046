"""The BiSeNet face parser: the public CelebAMask-HQ checkpoint's layout (`79999_iter.pth`) loads strictly, its class
order comes out as celebamask-hq-19's ids, a face photo is pseudo-labelled through `pipeline annotate-one`, and it is
the segmenter of mm-celeba-hq's evaluation, which refuses a segmenter of another label map by name."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from annotators.base import Item, build
from annotators.labelmaps import load_label_map
from annotators.weights import WeightsError
from pipeline.cli import main
from pipeline.params import load_params
from pipeline.params.annotate import SegParams
from public_layouts import bisenet_face_parsing_layout, deeplabv2_cocostuff164k_layout, filled

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
FACES = load_label_map("celebamask-hq-19")
# The checkpoint's ids 1..18 (0 is background): the `atts` list of zllrunning/face-parsing.PyTorch
# prepropess_data.py, which painted part atts[i] as i + 1 into the training masks.
CHECKPOINT_PARTS = ["skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose", "mouth",
                    "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"]


def checkpoint_predicting(checkpoint_id: int, state=None) -> dict[str, torch.Tensor]:
    """A state dict in the public layout (`state`'s values, else random ones) whose main head favours the
    checkpoint's class `checkpoint_id` everywhere (its input is post-ReLU: all-positive weights win)."""
    state = dict(state or filled(bisenet_face_parsing_layout()))
    state["conv_out.conv_out.weight"] = state["conv_out.conv_out.weight"].clone()
    state["conv_out.conv_out.weight"][checkpoint_id] = 1.0
    return state


def face_parser(path, tmp_path):
    """The face parser with the weights file `path`, set up on the CPU at 32 px."""
    annotator = build("seg", SegParams(model="bisenet-resnet18", weights=str(path), label_map="celebamask-hq-19",
                                       long_side=32, scales=[1.0]), tmp_path)
    annotator.setup("cpu")
    return annotator


def test_each_checkpoint_class_comes_out_as_its_celebamask_hq_19_id(tmp_path):
    base = filled(bisenet_face_parsing_layout())
    torch.save(checkpoint_predicting(0, base), tmp_path / "79999_iter.pth")
    annotator = face_parser(tmp_path / "79999_iter.pth", tmp_path)  # the file loads strictly
    face = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    for checkpoint_id, name in enumerate(["background"] + CHECKPOINT_PARTS):
        annotator.net.load_state_dict(checkpoint_predicting(checkpoint_id, base))
        labels = annotator([Item(face)])[0]["seg.png"]
        assert labels.shape == (24, 40) and labels.dtype == np.uint8
        assert (labels == FACES.id(name)).all(), name


def test_a_wrong_layout_is_refused_naming_the_key(tmp_path):
    state = filled(bisenet_face_parsing_layout())
    state["conv_out.conv_out.weight"] = torch.zeros(18, 256, 1, 1)
    torch.save(state, tmp_path / "classes.pth")
    with pytest.raises(WeightsError, match=r"conv_out.conv_out.weight.*\(18, 256, 1, 1\)"):
        face_parser(tmp_path / "classes.pth", tmp_path)
    torch.save(filled(deeplabv2_cocostuff164k_layout()), tmp_path / "deeplab.pth")
    with pytest.raises(WeightsError, match=r"face parser: state dict does not match.*missing keys \['cp.resnet"):
        face_parser(tmp_path / "deeplab.pth", tmp_path)


def test_input_is_the_face_squashed_to_a_square_with_imagenet_statistics(tmp_path):
    parser = build("seg", SegParams(model="bisenet-resnet18", weights="random", label_map="celebamask-hq-19",
                                    long_side=32), tmp_path)
    parser.setup("cpu")
    assert parser.input_size().pixels == 32 and parser.input_size().side == "short"
    red = np.zeros((30, 50, 3), np.uint8)
    red[..., 0] = 255
    square, size = parser.prepare(Item(red))
    assert square.shape == (32, 32, 3) and size == (30, 50)  # as test.py: PIL bilinear to 512 x 512, any aspect
    x = parser.network_input([square])
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))


def test_the_face_parser_only_speaks_celebamask_hq_19(tmp_path):
    with pytest.raises(ValueError, match="annotate.seg.label_map: model 'bisenet-resnet18' predicts"):
        build("seg", SegParams(model="bisenet-resnet18", weights="random"), tmp_path)


@pytest.fixture
def face_setup(tmp_path):
    """Params as the repository's, a 512 x 512 face photograph (scikit-image's astronaut) and the data dir."""
    from skimage.data import astronaut

    (tmp_path / "params.yaml").write_text(REPO_PARAMS.read_text())
    Image.fromarray(astronaut()).save(tmp_path / "face.png")
    (tmp_path / "data/weights").mkdir(parents=True)
    return tmp_path


def annotate_one(root, *args):
    return CliRunner().invoke(main, ["annotate-one", "seg", str(root / "face.png"), *args, "--dataset",
                                     "mm-celeba-hq", "--params", str(root / "params.yaml"),
                                     "--data-dir", str(root / "data")])


def test_annotate_one_pseudo_labels_a_face_with_the_registered_face_parser(face_setup):
    missing = annotate_one(face_setup)
    assert missing.exit_code == 1
    assert "79999_iter.pth" in missing.output and "pipeline weights fetch bisenet-celebamask-hq" in missing.output
    torch.save(checkpoint_predicting(CHECKPOINT_PARTS.index("hair") + 1), face_setup / "data/weights/79999_iter.pth")
    result = annotate_one(face_setup, "--out", str(face_setup / "face.seg.png"))
    assert result.exit_code == 0, result.output
    labels = cv2.imread(str(face_setup / "face.seg.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (512, 512) and (labels == FACES.id("hair")).all()
    assert "'model': 'bisenet-resnet18'" in result.output and "'label_map': 'celebamask-hq-19'" in result.output
    raw = annotate_one(face_setup, "--raw", "--out", str(face_setup / "face.npy"))
    assert raw.exit_code == 0, raw.output
    logits = np.load(face_setup / "face.npy", allow_pickle=False)  # the network's 512 x 512, celebamask-hq-19 ids
    assert logits.shape == (19, 512, 512) and (logits.argmax(0) == FACES.id("hair")).all()


def test_mm_celeba_hq_evaluation_segments_with_the_face_parser(tmp_path):
    from train.evaluate import annotator_functions
    from train.metrics.seg_consistency import check_segmenter

    params = load_params(REPO_PARAMS).for_dataset("mm-celeba-hq")
    check_segmenter(params.evaluate.metrics, params.annotate.seg, "mm-celeba-hq", "celebamask-hq-19")
    torch.save(checkpoint_predicting(CHECKPOINT_PARTS.index("skin") + 1), tmp_path / "79999_iter.pth")
    small = params.annotate.model_copy(update={"seg": params.annotate.seg.model_copy(update={"long_side": 64})})
    segment = annotator_functions(["seg_consistency"], small, tmp_path, "cpu")["segment"]
    generated = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert (segment(generated) == FACES.id("skin")).all()


def test_evaluation_refuses_a_segmenter_of_another_label_map_by_name(tmp_path):
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    overrides = raw["datasets"]["mm-celeba-hq"]["overrides"]
    for key in [k for k in overrides if k.startswith("annotate.seg.")]:
        del overrides[key]  # back to DeepLab-v2 COCO-Stuff
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["evaluate", "--dataset", "mm-celeba-hq", "--params",
                                       str(tmp_path / "params.yaml"), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "'deeplabv2-resnet101'" in result.output and "labels in 'coco-stuff-182'" in result.output
    assert "'celebamask-hq-19'" in result.output and "annotate.seg.model: bisenet-resnet18" in result.output
    assert not (tmp_path / "data" / "runs").exists()
