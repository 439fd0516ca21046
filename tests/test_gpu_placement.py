"""Device placement on (fake) CUDA: every forward path that training, grids, evaluation and annotation run on a
GPU keeps its tensors on the GPU (see tests/fake_cuda.py; docs/gpu.md lists what only real hardware shows)."""
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from fake_cuda import (CUDA, HostToDeviceCopies, KnownValues, ValueReads, condition_batch,  # noqa: F401
                       fake_cuda, on_cuda, on_device)

import annotators.clip  # noqa: F401 - imported outside fake mode (see fake_cuda.py)
import annotators.seg.bisenet  # noqa: F401
import annotators.seg.deeplabv2  # noqa: F401
from annotators.base import Item, build
from annotators.sketch.hed import HED
from annotators.sketch.simplify import SketchSimplifier
from pipeline.params.annotate import ClipParams, SegParams, SketchParams
from pipeline.params.stages import EvaluateParams
from train import evaluate, generate
from train.families.poegan.configs import get_config
from train.data import to_device
from train.loop import modality_masks
from train.metrics.base import EvalContext
from train.metrics.fid import FEATURE, generated_features
from train.metrics.lpips_diversity import load_lpips, lpips_distances
from train.models import DISCRIMINATOR_PHASE, GAN_PHASES, GENERATOR_PHASE, family
from train.metrics.conditions import CONDITIONS
from train.noise import private_noise
from train.samples import PATTERNS, generated_rows, pattern_masks, render_grid
from train.vgg import VGGRelu51

pytestmark = pytest.mark.usefixtures("one_thread")

NUM_CLASSES = 5
POEGAN = replace(get_config("tiny"), resolution=16, channel_base=8, channel_max=32, latent_base=2, latent_max=8)
# family() imports the model modules here, outside fake mode: their module-level constants stay real tensors
FAMILIES = {"poegan": (family("poegan"), POEGAN),
            **{name: (family(name), family(name).config("tiny"))
               for name in ("spade-seg", "spade-sketch", "spade-seg-monce", "inade")}}


def _networks(name):
    fam, cfg = FAMILIES[name]
    with on_cuda():
        G, D = fam.networks(cfg, NUM_CLASSES)
    return cfg, G, D


@pytest.mark.parametrize("name", FAMILIES)
def test_sample_grid_generation_stays_on_the_gpu(fake_cuda, name):
    cfg, G, _ = _networks(name)
    rows = generated_rows(G.eval(), condition_batch(NUM_CLASSES, getattr(cfg, "clip_dim", 8), cfg.resolution))
    assert len(rows) == len(PATTERNS) and on_device(rows)


def _clip_dim(cfg) -> int:
    return getattr(cfg, "clip_dim", 8)


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("name", FAMILIES)
def test_generator_and_discriminator_forward_stay_on_the_gpu(fake_cuda, name, amp):
    cfg, G, D = _networks(name)
    batch = condition_batch(NUM_CLASSES, _clip_dim(cfg), cfg.resolution)
    masks = modality_masks(2, CUDA)
    with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        image, extras = G(batch, masks)
        out = D(image, batch, masks) if name == "poegan" else D(image, batch)
    assert image.shape == (2, 3, cfg.resolution, cfg.resolution) and on_device([image, extras, out])


def NO_BACKWARD(total):
    """backward needs a real CUDA context: the phases' backward passes are checked on the meta device."""


def _loss(name, cfg, G, D):
    return FAMILIES[name][0].loss(G, D, VGGRelu51(None), cfg)


@pytest.mark.parametrize("name", FAMILIES)
def test_loss_phases_run_on_the_gpu(fake_cuda, name):
    cfg, G, D = _networks(name)
    with on_cuda():
        loss = _loss(name, cfg, G, D)
    batch, masks = condition_batch(NUM_CLASSES, _clip_dim(cfg), cfg.resolution), modality_masks(2, CUDA)
    logged = {**loss.accumulate_gradients(GENERATOR_PHASE, batch, masks, NO_BACKWARD),
              **loss.accumulate_gradients(DISCRIMINATOR_PHASE, batch, masks, NO_BACKWARD)}
    loss.end_step()
    assert on_device([logged, loss.log_state()])


@pytest.mark.parametrize("name", FAMILIES)
def test_a_steps_loss_after_the_first_copies_nothing_from_the_host(fake_cuda, name):
    # the loop builds the loss on the CPU: its first step may move loss state to the device (PoE-GAN's KL
    # rebalancing weights), later steps must not copy it again
    cfg, G, D = _networks(name)
    loss = _loss(name, cfg, G, D)
    loss.vgg.to(CUDA)
    batch, masks = condition_batch(NUM_CLASSES, _clip_dim(cfg), cfg.resolution), modality_masks(2, CUDA)
    for step in (1, 2):
        with HostToDeviceCopies() as copies:
            for phase in GAN_PHASES:
                loss.accumulate_gradients(phase, batch, masks, NO_BACKWARD)
            loss.end_step()
    assert copies.ops == []


def test_modality_dropout_is_drawn_on_the_gpu(fake_cuda):
    with HostToDeviceCopies() as copies:
        masks = modality_masks(2, CUDA)
    assert copies.ops == [] and on_device(masks)


@pytest.mark.parametrize("name", FAMILIES)
def test_loss_phases_read_no_value_back_from_the_device(name):
    cfg, G, D = FAMILIES[name][1], *FAMILIES[name][0].networks(FAMILIES[name][1], NUM_CLASSES)
    loss = _loss(name, cfg, G, D)
    batch, masks = condition_batch(NUM_CLASSES, _clip_dim(cfg), cfg.resolution, device="cpu"), modality_masks(2, "cpu")
    with ValueReads() as reads:
        logged = {**loss.accumulate_gradients(GENERATOR_PHASE, batch, masks, NO_BACKWARD),
                  **loss.accumulate_gradients(DISCRIMINATOR_PHASE, batch, masks, NO_BACKWARD), **loss.log_state()}
    assert reads.count == 0 and all(isinstance(v, torch.Tensor) for v in logged.values())


META = torch.device("meta")
PHASES = [(name, phase) for name, (fam, _) in FAMILIES.items() for phase in fam.phases]


@pytest.mark.parametrize("name, phase", PHASES, ids=[f"{name}-{phase.name}" for name, phase in PHASES])
def test_training_phases_backpropagate_on_a_stand_in_device(name, phase):
    # the meta device stands in for CUDA where fake tensors cannot run backward: no values, no host tensors
    fam, cfg = FAMILIES[name]
    with META:
        G, D = fam.networks(cfg, NUM_CLASSES)
        loss = fam.loss(G, D, VGGRelu51(None), cfg)
    net = {"G": G, "D": D}[phase.network]
    G.requires_grad_(net is G), D.requires_grad_(net is D)
    batch = condition_batch(NUM_CLASSES, _clip_dim(cfg), cfg.resolution, device=META)
    logged = loss.accumulate_gradients(phase, batch, modality_masks(2, META), torch.Tensor.backward)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert on_device([logged, grads], META) and grads


@pytest.mark.parametrize("name", FAMILIES)
def test_training_forward_copies_nothing_from_the_host(fake_cuda, name):
    cfg, G, D = _networks(name)
    batch, masks = condition_batch(NUM_CLASSES, _clip_dim(cfg), cfg.resolution), modality_masks(2, CUDA)
    with HostToDeviceCopies() as copies:
        image, _ = G(batch, masks)
        D(image, batch, masks) if name == "poegan" else D(image, batch)
    assert copies.ops == []


def test_a_loader_batch_goes_to_the_gpu_in_one_copy_per_tensor_and_one_hot_there(fake_cuda):
    batch = {"image": torch.zeros(2, 3, 8, 8), "seg": torch.zeros(2, 8, 8, dtype=torch.uint8),
             "sketch": torch.zeros(2, 1, 8, 8), "text": torch.zeros(2, 4)}
    with HostToDeviceCopies() as copies:
        on_gpu = to_device(batch, CUDA, 182)
    assert len(copies.ops) == len(batch) and on_device(on_gpu)
    assert on_gpu["seg"].shape == (2, 182, 8, 8) and on_gpu["style"] is on_gpu["image"]


# Evaluation and `pipeline generate` at the shapes of real profiles (182 classes): the conditions cross to the GPU
# once per test batch / request as the loader's batch, the labels as uint8 class ids (a one-hot map is 182 floats
# a pixel: 24 GB for a batch of 32 at 1024 px), and are made one-hot on the GPU
CLASSES = 182
REAL = {"poegan": "landscape-1024", **{name: "coco-256" for name in ("spade-seg", "spade-sketch", "spade-seg-monce",
                                                                      "inade", "unite-conquer", "cluster-guided")}}


def _real_generator(name):
    """The family's generator at its real profile on fake CUDA (a sampler cut to 1 step; cluster-guided with
    two clusters at 8 px), and the configuration."""
    fam = family(name)
    cfg = fam.config(REAL[name])
    if name == "unite-conquer":
        cfg = replace(cfg, sample_steps=1)
    with on_cuda():
        G = fam.generator(cfg, CLASSES)
        if name == "cluster-guided":
            from train.families.cluster_guided.imle import mapper
            for share in (0.3, 0.7):
                G.add_cluster(8, torch.zeros(cfg.channels(8)), share, mapper(4, 8, 2, 512))
    return G.eval().requires_grad_(False), cfg


def _loader_batch(cfg, n: int) -> dict:
    """A test batch as the evaluation set holds it on the host (the training loader's layout)."""
    r, dim = cfg.resolution, _clip_dim(cfg)
    return {"image": torch.rand(n, 3, r, r) * 2 - 1, "seg": torch.zeros(n, r, r, dtype=torch.uint8),
            "sketch": torch.rand(n, 1, r, r), "text": torch.randn(n, dim), "clip_image": torch.randn(n, dim)}


def _crossed_once_as_given(copies, given: list, resolution: int) -> bool:
    """Each of the `given` host tensors was copied to the GPU exactly once, and every other host tensor copied
    (noise drawn on the CPU) is smaller than one image's one-hot map."""
    once = all(sum(t is v for t in copies.host) == 1 for v in given)
    others = [t for t in copies.host if not any(t is v for v in given)]
    return once and all(t.numel() < CLASSES * resolution ** 2 for t in others)


@pytest.mark.parametrize("name", REAL)
def test_evaluation_takes_each_test_batch_to_the_gpu_once_with_class_ids_at_a_real_profile(fake_cuda, name):
    from train.eval_data import EvalBatch
    from train.models import EvalRow

    G, cfg = _real_generator(name)
    fam = family(name)
    rows = fam.rows(G) if fam.rows else [EvalRow(c, c, G) for c in fam.conditions or ("all",)]
    cond = _loader_batch(cfg, 2)
    batch = EvalBatch(3, np.arange(6, 8), cond, np.zeros((2, 1, 1, 3), np.uint8), None, None, None, ["a", "b"])
    p = EvaluateParams(diversity_groups=2, diversity_images=8)  # a second noise draw of both: a second forward
    with KnownValues(), HostToDeviceCopies() as copies:
        out = [(row.name, images.shape, groups.shape)
               for row, images, groups in evaluate.generate_rows(rows, batch, CLASSES, p, CUDA)]
    r = cfg.resolution
    assert out == [(row.name, (2, r, r, 3), (2, 2, r, r, 3)) for row in rows]
    assert _crossed_once_as_given(copies, list(cond.values()), r) and cond["seg"].dtype == torch.uint8


@pytest.mark.parametrize("name", [name for name in REAL if name != "cluster-guided"])  # not given conditions
def test_generate_takes_the_request_to_the_gpu_once_with_class_ids_at_a_real_profile(fake_cuda, name):
    G, cfg = _real_generator(name)
    r = cfg.resolution
    decoded = {"text": np.ones(_clip_dim(cfg)), "seg": np.zeros((r // 2, r), np.uint8),
               "sketch": np.zeros((r // 2, r), np.uint8), "style": np.zeros((r // 2, r, 3), np.uint8)}
    given = generate.Given(**{m: decoded[m] for m in family(name).takes(cfg)})
    with KnownValues():  # the masks' values: which experts Unite-and-Conquer runs
        batch, masks = generate.condition_batch(given, r, CLASSES, _clip_dim(cfg), "random-crop")
        with HostToDeviceCopies() as copies:
            images = generate.sample(G, batch, masks, seed=0, n=2, device=CUDA, num_classes=CLASSES)
    assert images.shape == (2, r, r, 3) and batch["seg"].dtype == torch.uint8 and batch["seg"].shape == (1, r, r)
    assert _crossed_once_as_given(copies, [*batch.values(), *masks.values()], r)


@pytest.fixture(scope="module")
def extractors(tmp_path_factory):
    """FID's Inception and LPIPS with random weights, built for real on the CPU (outside fake mode)."""
    import io

    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    buf = io.BytesIO()
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                               init_weights=False).state_dict(), buf)
    buf.seek(0)
    inception = FeatureExtractorInceptionV3("inception-v3-compat", [FEATURE], feature_extractor_weights_path=buf)
    alexnet = evaluate.random_weights_file("alexnet", tmp_path_factory.mktemp("w"))
    return inception, load_lpips(str(alexnet), alexnet.parent)


def test_metric_feature_extractors_run_on_the_gpu(extractors, fake_cuda, tmp_path):
    inception, lpips = extractors
    ctx = EvalContext(params=EvaluateParams(), weights_dir=tmp_path, cache_dir=tmp_path, device="cuda")
    ctx.models["inception"] = (inception.to(CUDA), "0" * 64)
    images = np.zeros((3, 32, 32, 3), np.uint8)
    assert generated_features(images, ctx).shape == (3, 2048)
    assert lpips_distances(images, images, lpips.to(CUDA), batch_size=2, device="cuda").shape == (3,)


@pytest.mark.parametrize("name, params", [
    ("seg", SegParams(weights="random", long_side=32)),
    ("seg", SegParams(weights="random", long_side=32, precision="bf16", scales=[1.0, 0.5])),
    ("seg", SegParams(model="bisenet-resnet18", weights="random", label_map="celebamask-hq-19", long_side=32)),
    ("sketch", SketchParams(weights="random", simplify_weights="random", resolution=32, simplify=True)),
    ("clip", ClipParams(model="ViT-B-32", weights="random"))])
def test_annotators_run_on_the_gpu_under_their_autocast(fake_cuda, monkeypatch, tmp_path, name, params):
    annotator = build(name, params, tmp_path)
    module = sys.modules[type(annotator).__module__]
    monkeypatch.setattr(module, "pick_device", torch.device)  # this machine has no CUDA to pick
    annotator.setup("cuda")
    if name == "clip":  # PIL preprocessing is CPU work fake mode cannot run (it reads pixel values)
        annotator.preprocess = lambda image: torch.zeros(3, 224, 224)
    assert on_device(list(annotator.net.parameters()))
    items = [Item(np.zeros((40, 30, 3), np.uint8), ["a caption"]), Item(np.zeros((24, 40, 3), np.uint8))]
    outputs = annotator(items)
    assert len(outputs) == 2 and outputs[0] and outputs[1]


def test_sketch_probabilities_are_fp32_under_fp16_autocast(fake_cuda):
    # both are thresholded at 0.5: an fp16 sigmoid moves pixels across it
    with on_cuda():
        hed, simplifier = HED(), SketchSimplifier()
    with torch.autocast("cuda", dtype=torch.float16):
        assert hed(torch.rand(1, 3, 32, 32, device=CUDA)).dtype == torch.float32
        assert simplifier(torch.rand(1, 1, 32, 32, device=CUDA)).dtype == torch.float32


def _evaluate_twice(G, cond):
    images = [evaluate.generate(G, cond, "seg", seed=3, batch_size=1, device="cpu") for _ in range(2)]
    assert (images[0] == images[1]).all()  # its own noise, the same each time


@pytest.mark.parametrize("draw", [_evaluate_twice, lambda G, cond: render_grid(G, cond, np.zeros((NUM_CLASSES, 3),
                                                                                                np.uint8))],
                         ids=["evaluation", "sample-grid"])
def test_evaluation_and_sample_grids_leave_every_training_rng_alone(monkeypatch, draw):
    fam, cfg = FAMILIES["poegan"]
    G, _ = fam.networks(cfg, NUM_CLASSES)
    cond = condition_batch(NUM_CLASSES, cfg.clip_dim, cfg.resolution, device="cpu")
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)  # what torch.manual_seed does to CUDA
    before = torch.get_rng_state()
    draw(G.eval(), cond)
    assert seeded == [] and torch.equal(torch.get_rng_state(), before)


def _cluster_guided():
    """A cluster-guided generator on the GPU with two clusters at 8 px (as a fit leaves it)."""
    from train.families.cluster_guided.generator import ClusterGuidedGenerator
    from train.families.cluster_guided.imle import mapper

    with on_cuda():
        G = ClusterGuidedGenerator(POEGAN, NUM_CLASSES)
        for share in (0.3, 0.7):  # features pooled to 1 x 1 (the default pool): one value per channel
            G.add_cluster(8, torch.zeros(POEGAN.channels(8)), share, mapper(4, 8, 2, 512))
    return G.eval().requires_grad_(False)


def test_cluster_guided_generation_and_cluster_assignment_stay_on_the_gpu(fake_cuda):
    G = _cluster_guided()
    batch, masks = condition_batch(NUM_CLASSES, POEGAN.clip_dim, POEGAN.resolution), modality_masks(2, CUDA)
    with HostToDeviceCopies() as copies:
        mixture, _ = G(batch, masks)
        one, _ = G(batch, masks, cluster=1)
    assert copies.ops == [] and on_device([mixture, one]) and mixture.shape == (2, 3, 16, 16)
    assert on_device(G.assign(G.codes(torch.zeros(2, 4, device=CUDA), 0), 8))
    cond = condition_batch(NUM_CLASSES, POEGAN.clip_dim, POEGAN.resolution, n=3, device="cpu")
    for _, call in G.rows():
        assert evaluate.generate(call, cond, "unconditional", seed=0, batch_size=2, device=CUDA).shape == (3, 16, 16, 3)


# Unite-and-Conquer: one network (the experts) and one phase; 32 px UNets of a few channels, 2 sampling steps
UC = replace(family("unite-conquer").config("tiny"), channels=32, sample_steps=2, clip_dim=8)


def _experts(device=CUDA, cfg=UC):
    fam = family("unite-conquer")
    with torch.device(device):
        (G,) = fam.networks(cfg, NUM_CLASSES)
        loss = fam.loss(G, None, cfg)
    return G, loss


def test_unite_conquer_training_phase_stays_on_the_gpu_and_copies_nothing_after_its_first_step(fake_cuda):
    G, loss = _experts()
    batch, masks = condition_batch(NUM_CLASSES, 8, UC.resolution), modality_masks(2, CUDA)
    assert on_device(loss.accumulate_gradients(GENERATOR_PHASE, batch, masks, NO_BACKWARD))  # may move its tables once
    with HostToDeviceCopies() as copies:
        logged = loss.accumulate_gradients(GENERATOR_PHASE, batch, masks, NO_BACKWARD)
    assert copies.ops == [] and on_device(logged)


def test_unite_conquer_training_phase_backpropagates_on_a_stand_in_device():
    G, loss = _experts(META)
    logged = loss.accumulate_gradients(GENERATOR_PHASE, condition_batch(NUM_CLASSES, 8, UC.resolution, device=META),
                                       modality_masks(2, META), torch.Tensor.backward)
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert on_device([logged, grads], META) and len(grads) == len(list(G.parameters()))


def test_unite_conquer_training_phase_reads_no_value_back_from_the_device():
    G, loss = _experts("cpu")
    batch, masks = condition_batch(NUM_CLASSES, 8, UC.resolution, device="cpu"), modality_masks(2, "cpu")
    with ValueReads() as reads:
        logged = loss.accumulate_gradients(GENERATOR_PHASE, batch, masks, torch.Tensor.backward)
    assert reads.count == 0 and all(isinstance(v, torch.Tensor) for v in logged.values())


# Sampling reads which experts to run from the masks on the host, and the ancestral scheduler looks its timesteps
# up in host tables: KnownValues gives those small tensors their values on fake CUDA (and counts device reads)
@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
@pytest.mark.parametrize("pattern, passes", [((), {"seg": 1, "sketch": 1, "text": 1}), (("seg",), {"seg": 1}),
                                             (("text", "seg", "sketch"), {"seg": 2, "sketch": 2, "text": 2})],
                         ids=["none", "seg", "all"])
def test_unite_conquer_sampling_stays_on_the_gpu_and_reads_the_masks_once_per_call(fake_cuda, sampler, pattern,
                                                                                   passes):
    G, _ = _experts(cfg=replace(UC, sampler=sampler))
    calls = {name: 0 for name in G.experts}
    for name, net in G.experts.items():
        net.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    batch = condition_batch(NUM_CLASSES, 8, UC.resolution)
    with KnownValues() as known, HostToDeviceCopies() as copies, private_noise(0):  # as grids and evaluation do
        image, extras = G.eval()(batch, pattern_masks(pattern, 2, CUDA))
    assert image.shape == (2, 3, UC.resolution, UC.resolution) and on_device([image, extras])
    # w = 1: one expert alone needs no null estimate; none runs every expert's null one, all adds them to Eq. 10
    assert calls == {name: UC.sample_steps * passes.get(name, 0) for name in G.experts}
    assert known.device_reads == 1  # which experts run: once per call, not once per step
    # the only host-to-device copies: noise drawn on the CPU (the same on every device), x_T and, for the
    # ancestral sampler, each step's but the last (t = 0 adds none)
    noise = 1 + (UC.sample_steps - 1 if sampler == "ancestral" else 0)
    assert copies.ops == ["aten._to_copy.default"] * noise


def test_unite_conquer_grids_evaluation_and_generate_sample_on_the_gpu(fake_cuda):
    G, _ = _experts()
    G.eval()
    with KnownValues():
        rows = generated_rows(G, condition_batch(NUM_CLASSES, 8, UC.resolution))
        assert len(rows) == len(PATTERNS) and on_device(rows)
        cond = condition_batch(NUM_CLASSES, 8, UC.resolution, n=3, device="cpu")  # the test set: CPU
        for condition in CONDITIONS:
            images = evaluate.generate(G, cond, condition, seed=0, batch_size=2, device=CUDA)
            assert images.shape == (3, UC.resolution, UC.resolution, 3)
        given = generate.Given(text=np.ones(8), seg=np.zeros((20, 24), np.uint8), sketch=np.zeros((20, 24), np.uint8))
        batch, masks = generate.condition_batch(given, UC.resolution, NUM_CLASSES, 8, "random-crop")
        images = generate.sample(G, batch, masks, seed=0, n=2, device=CUDA, num_classes=NUM_CLASSES)
        assert images.shape == (2, UC.resolution, UC.resolution, 3)
