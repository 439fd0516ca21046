"""Segmentation annotator: the public DeepLab-v2 COCO-Stuff checkpoint layout loads strictly and drives the output;
smp alternatives and label-map mapping; batch-size invariance, determinism, dtype/shape/range."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from annotators.base import Item, build
from annotators.labelmaps import load_label_map
from annotators.resize import resize_long_side
from annotators.seg.labelmap_mapping import available as available_mappings, label_mapping
from annotators.weights import WeightsError, sha256_of
from pipeline.params.annotate import SegParams
from public_layouts import deeplabv2_cocostuff164k_layout, filled

pytestmark = pytest.mark.usefixtures("one_thread")  # the shared machine's cores are busy

SKY = load_label_map("coco-stuff-182").id("sky-other")


def images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def public_checkpoint(tmp_path_factory):
    """A file with exactly the public checkpoint's keys and shapes; ASPP biases favour 'sky-other'."""
    state = filled(deeplabv2_cocostuff164k_layout())
    state["base.aspp.c0.bias"][SKY] = 5.0
    path = tmp_path_factory.mktemp("w") / "deeplabv2_resnet101_msc-cocostuff164k-100000.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def random_deeplab(tmp_path_factory):
    annotator = build("seg", SegParams(weights="random", long_side=32, scales=[1.0]), tmp_path_factory.mktemp("w"))
    annotator.setup("cpu")
    return annotator


def test_public_layout_loads_strictly_and_drives_the_labels(public_checkpoint, tmp_path):
    path, _ = public_checkpoint
    annotator = build("seg", SegParams(weights=str(path), long_side=40), tmp_path)
    annotator.setup("cpu")
    image = images([(30, 50)])[0]
    labels = annotator([Item(image)])[0]["seg.png"]
    assert labels.shape == (30, 50) and labels.dtype == np.uint8
    assert (labels == SKY).all()
    meta = annotator.metadata()
    assert meta["model"] == "deeplabv2-resnet101" and meta["label_map"] == "coco-stuff-182"
    assert meta["weights"] == str(path) and len(meta["sha256"]) == 64


def test_a_wrong_shape_is_named(public_checkpoint, tmp_path):
    _, state = public_checkpoint
    bad = dict(state)
    bad["base.aspp.c2.weight"] = torch.zeros(150, 2048, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"aspp.c2.weight.*\(150, 2048, 3, 3\)"):
        build("seg", SegParams(weights=str(tmp_path / "bad.pth")), tmp_path).setup("cpu")


def test_a_missing_key_is_named(public_checkpoint, tmp_path):
    _, state = public_checkpoint
    bad = {k: v for k, v in state.items() if k != "base.layer4.block23.conv3x3.bn.running_var"}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="layer4.block23.conv3x3.bn.running_var"):
        build("seg", SegParams(weights=str(tmp_path / "bad.pth")), tmp_path).setup("cpu")


def test_registry_weights_missing_from_the_cache_fail_before_any_work(tmp_path):
    with pytest.raises(WeightsError, match="pipeline weights fetch deeplabv2-cocostuff164k"):
        build("seg", SegParams(), tmp_path).setup("cpu")


def test_deeplab_input_is_bgr_minus_the_mean_at_0_255(random_deeplab):
    pure_blue = np.zeros((4, 6, 3), np.uint8)
    pure_blue[..., 2] = 255
    x = random_deeplab.network_input([pure_blue])
    assert x.shape == (1, 3, 4, 6)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([255 - 104.008, -116.669, -122.675]))


def test_bytes_are_the_same_for_every_batch_size(random_deeplab):
    batch = images([(40, 60), (60, 40), (40, 60), (30, 45)])
    whole = random_deeplab([Item(i) for i in batch])
    for a, image in zip(whole, batch):
        assert a["seg.png"].shape == image.shape[:2] and a["seg.png"].dtype == np.uint8 and a["seg.png"].max() < 182
    for batch_size in (1, 3):
        parts = [out for s in range(0, len(batch), batch_size)
                 for out in random_deeplab([Item(i) for i in batch[s:s + batch_size]])]
        assert all((a["seg.png"] == b["seg.png"]).all() for a, b in zip(whole, parts)), f"batch size {batch_size}"
    together = random_deeplab.logits([batch[0], batch[2]])  # the argmax hides small changes; the logits do not
    assert torch.equal(together[1], random_deeplab.logits([batch[2]])[0])


def test_deterministic_random_weights_are_the_same_on_every_setup(random_deeplab, tmp_path):
    other = build("seg", SegParams(weights="random", long_side=32, scales=[1.0]), tmp_path)
    other.setup("cpu")
    image = images([(40, 40)])[0]
    assert (other([Item(image)])[0]["seg.png"] == random_deeplab([Item(image)])[0]["seg.png"]).all()
    assert other.metadata()["sha256"] == "random"


def test_multi_scale_is_the_max_of_logits_over_scales_at_the_base_resolution(random_deeplab, tmp_path):
    multi = build("seg", SegParams(weights="random", long_side=32, scales=[0.5, 1.0, 0.75]), tmp_path)
    multi.setup("cpu")
    image = images([(48, 40)])[0]
    x = multi.network_input([resize_long_side(image, 32)])  # [1, 3, 32, 27]
    with torch.inference_mode():
        base = multi.net(x)
        half = multi.net(F.interpolate(x, size=(16, 13), mode="bilinear", align_corners=False))
        three_quarters = multi.net(F.interpolate(x, size=(24, 20), mode="bilinear", align_corners=False))
    up = lambda logits: F.interpolate(logits, size=base.shape[-2:], mode="bilinear", align_corners=False)
    expected = torch.maximum(torch.maximum(base, up(half)), up(three_quarters))
    single = random_deeplab.logits([resize_long_side(image, 32)])
    assert torch.equal(multi.logits([resize_long_side(image, 32)]), expected)
    assert single.shape == expected.shape and torch.equal(single, base)
    assert not torch.equal(expected, base)


def test_scales_must_list_the_base_resolution():
    with pytest.raises(ValueError, match="must list 1.0"):
        SegParams(scales=[0.5, 0.75])
    assert SegParams().scales == [1.0, 0.5, 0.75]


def test_smp_checkpoint_with_ade20k_labels_mapped_to_coco_stuff(tmp_path):
    import segmentation_models_pytorch as smp

    net = smp.create_model("DeepLabV3Plus", encoder_name="resnet18", encoder_weights=None, classes=150)
    state = net.state_dict()
    state["segmentation_head.0.bias"][load_label_map("ade20k-150").id("sky")] = 50.0
    torch.save(state, tmp_path / "ade.pth")
    params = SegParams(model="smp:DeepLabV3Plus", encoder="resnet18", weights=str(tmp_path / "ade.pth"),
                       label_map="ade20k-150", output_label_map="coco-stuff-182", long_side=64)
    annotator = build("seg", params, tmp_path)
    annotator.setup("cpu")
    out = annotator([Item(i) for i in images([(50, 70), (37, 41)])])
    assert [o["seg.png"].shape for o in out] == [(50, 70), (37, 41)]
    assert all((o["seg.png"] == SKY).all() for o in out)
    assert annotator.metadata()["label_map"] == "coco-stuff-182"


def test_unknown_model_and_missing_mapping_fail_at_build(tmp_path):
    with pytest.raises(ValueError, match="annotate.seg.model"):
        build("seg", SegParams(model="deeplabv9"), tmp_path)
    with pytest.raises(KeyError, match="no mapping from label map 'coco-stuff-182' to 'ade20k-150'"):
        build("seg", SegParams(output_label_map="ade20k-150"), tmp_path)


def test_smp_hub_directory_loads_offline_and_checks_the_class_count(tmp_path):
    import segmentation_models_pytorch as smp

    net = smp.create_model("Unet", encoder_name="resnet18", encoder_weights=None, classes=150)
    net.save_pretrained(tmp_path / "m")
    params = SegParams(model="smp-hub", weights=str(tmp_path / "m"), label_map="ade20k-150", long_side=48)
    annotator = build("seg", params, tmp_path)
    annotator.setup("cpu")
    assert annotator([Item(images([(40, 50)])[0])])[0]["seg.png"].shape == (40, 50)
    meta = annotator.metadata()
    assert meta["model"] == f"smp-hub:{tmp_path / 'm'}"
    assert meta["sha256"] == sha256_of(tmp_path / "m/model.safetensors")
    with pytest.raises(WeightsError, match="predicts 150 classes, label map 'coco-stuff-182' has 182"):
        build("seg", SegParams(model="smp-hub", weights=str(tmp_path / "m")), tmp_path).setup("cpu")


COCO_STUFF_REMOVED = {"street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window", "desk", "door",
                      "blender", "hair brush"}  # nightrome/cocostuff labels.md: "Removed from COCO"


def test_coco_stuff_knows_the_eleven_ids_it_never_annotates():
    coco = load_label_map("coco-stuff-182")
    assert {coco.names[i] for i in coco.unannotated} == COCO_STUFF_REMOVED


@pytest.mark.parametrize("source, target", available_mappings())
def test_every_shipped_mapping_targets_only_annotated_classes(source, target):
    table, labels = label_mapping(source, target), load_label_map(target)
    targets = set(table[: load_label_map(source).num_classes].tolist()) - {255}
    assert targets and not targets & labels.unannotated, [labels.names[i] for i in targets & labels.unannotated]
    if (source, target) == ("ade20k-150", "coco-stuff-182"):
        ade = load_label_map(source)
        assert labels.names[table[ade.id("mirror")]] == "mirror-stuff" and table[ade.id("plate")] == 255
