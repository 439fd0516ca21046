"""FID and KID through torch-fidelity's InceptionV3: behaviour on known inputs, strict weight loading through the
weight registry, and the on-disk cache of reference features.

No Inception weights can be downloaded here, so the fixture writes a file in the library's own layout with random
weights (see metric_fixtures.write_random_inception).
"""
import numpy as np
import pytest
import scipy.linalg
import torch
from metric_fixtures import add_noise, smooth_images, write_random_inception

from annotators.weights import WeightsError
from pipeline.params.stages import EvaluateParams
from torch_fidelity.metric_kid import kid_features_to_metric

from train.metrics import MetricStream, evaluate, fid
from train.metrics.base import EvalContext, EvalInputs, Reference
from train.metrics.feature_files import Appender, Rows, assemble
from train.metrics.fid import (Gaussian, extract_features, frechet_distance, kernel_distance, load_inception,
                               reference_features, trace_sqrt_product)

# std of added Gaussian noise, in uint8 levels; strong enough that on 6 images the set-to-set change dominates
# the small-sample bias of KID's estimator. Each level costs one FID (eigenvalues of a 2048 x 2048 product, seconds
# on a loaded CPU), so the default suite checks the growth on two levels and the slow suite on three.
NOISE_LEVELS = [pytest.param([24, 64, 128], marks=pytest.mark.slow, id="3-levels"),
                pytest.param([24, 128], id="2-levels")]


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return write_random_inception(tmp_path_factory.mktemp("weights") / "pt_inception-random.pth")


def make_context(tmp_path, inception_file, **params) -> EvalContext:
    params = EvaluateParams(inception_weights=str(inception_file), kid_subsets=10, **params)
    return EvalContext(params, weights_dir=tmp_path / "weights", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("noise", NOISE_LEVELS)
def test_fid_and_kid_are_about_zero_on_the_same_set_and_grow_with_noise(tmp_path, inception_file, noise):
    ctx = make_context(tmp_path, inception_file)
    images = smooth_images(6)
    reference = extract_features([images], ctx, "reference")
    noisy = [extract_features([add_noise(images, std)], ctx, f"noise {std}") for std in noise]

    fids = [frechet_distance(reference, reference)] + [frechet_distance(f, reference) for f in noisy]
    assert abs(fids[0]) < 1e-2 * fids[1]
    assert fids == sorted(fids) and len(set(fids)) == len(fids)

    # The unbiased KID of a set against itself is slightly negative (it leaves out the kernel's diagonal only
    # within each set); it is small next to the KID of the noisy sets, which grows with the noise.
    kids = [kernel_distance(reference, reference, 10, 1000, 0)[0]]
    kids += [kernel_distance(f, reference, 10, 1000, 0)[0] for f in noisy]
    assert kids == sorted(kids) and len(set(kids)) == len(kids)
    assert abs(kids[0]) < 1e-2 * kids[1]


def test_frechet_distance_is_the_closed_form_between_the_fitted_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6))
    b = rng.normal(1.0, 2.0, size=(30, 6)) @ rng.normal(size=(6, 6))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2)
                + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_fewer_samples_than_dimensions_give_the_distance_of_the_full_covariances():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 12))
    b = rng.normal(1.0, 2.0, size=(4, 12)) @ rng.normal(size=(12, 12))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # rank 4 and 3 of 12
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * trace_sqrt_product(cov_a, cov_b))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)  # the eigh path: sqrt of ~1e-13 noise
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


def test_kid_is_the_unbiased_mmd_with_the_cubic_polynomial_kernel():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(12, 5)), rng.normal(0.5, 1.5, size=(12, 5))

    def kernel(x, y):
        return (x @ y.T / x.shape[1] + 1) ** 3

    n = len(a)
    within = [(kernel(x, x).sum() - np.trace(kernel(x, x))) / (n * (n - 1)) for x in (a, b)]
    expected = sum(within) - 2 * kernel(a, b).mean()
    # a subset size above the sets' size is capped to it: every subset is the whole set, so the std is 0
    mean, std = kernel_distance(a, b, subsets=3, subset_size=1000, seed=0)
    assert mean == pytest.approx(expected, rel=1e-9) and std == pytest.approx(0, abs=1e-12)


def test_reference_features_are_cached_per_dataset_split_and_extractor(tmp_path, inception_file):
    images = smooth_images(4, seed=3)
    calls = []

    def reference_batches():
        calls.append(1)
        yield images[:2]
        yield images[2:]

    def inputs(split: str) -> EvalInputs:
        return EvalInputs(images, reference=Reference("sample", split, 4, 64, reference_batches))

    first = evaluate(["fid", "kid"], inputs("test"), make_context(tmp_path, inception_file))
    assert calls == [1] and abs(first["fid"]) < 1e-2
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("sample-test-64px-torch-fidelity-0.4.0-inception-v3-compat")

    # a new run (new context: nothing in memory) reads the reference features from disk; KID alone shows it (it
    # reads the same cached features as FID, without FID's seconds-long 2048 x 2048 eigendecomposition)
    ctx = make_context(tmp_path, inception_file)
    assert evaluate(["kid"], inputs("test"), ctx) == {k: first[k] for k in ("kid", "kid_std")} and calls == [1]

    # another split is another reference: computed, not confused with the cached one
    evaluate(["kid"], inputs("train"), ctx)
    assert calls == [1, 1] and len(list((tmp_path / "cache").iterdir())) == 2


def test_a_reference_that_brings_its_features_is_cached_without_reading_its_images(tmp_path, inception_file):
    # evaluation embeds the test images as it reads them, on every process: a cache miss must not read them again
    images = smooth_images(4, seed=3)
    features = extract_features([images], make_context(tmp_path, inception_file), "reference")

    def unread():
        raise AssertionError("the reference images were read again")

    computed = Reference("sample", "test", 4, 64, unread, features=[features[:3].astype(np.float32),
                                                                    features[3:].astype(np.float32)])
    assert np.array_equal(reference_features(computed, make_context(tmp_path, inception_file)), features)
    # the next run finds them in the cache
    cached = Reference("sample", "test", 4, 64, unread)
    assert np.array_equal(reference_features(cached, make_context(tmp_path, inception_file)), features)


def test_inception_weights_load_strictly_from_the_library_layout(tmp_path, inception_file):
    extractor, sha = load_inception(str(inception_file), tmp_path)
    assert len(sha) == 64
    reference = torch.load(inception_file, weights_only=True)
    loaded = extractor.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.items())

    incomplete = {k: v for k, v in reference.items() if not k.startswith("Mixed_7c.")}
    torch.save(incomplete, tmp_path / "incomplete.pth")
    with pytest.raises(WeightsError, match="(?s)torch-fidelity's InceptionV3 layout.*Missing.*Mixed_7c"):
        load_inception(str(tmp_path / "incomplete.pth"), tmp_path)

    torch.save({"not": "tensors"}, tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="not a state dict of tensors"):
        load_inception(str(tmp_path / "junk.pth"), tmp_path)


def test_missing_inception_weights_give_the_registry_error(tmp_path):
    with pytest.raises(WeightsError, match=r"inception-2015-12-05.*not found at .*pt_inception-2015-12-05.*fetch"):
        load_inception("inception-2015-12-05", tmp_path / "empty-weights-dir")


def test_streaming_generated_images_one_at_a_time_gives_the_fid_and_kid_of_the_whole_set(tmp_path, inception_file):
    images, reference_images = add_noise(smooth_images(4, seed=3), 64), smooth_images(4, seed=3)
    reference = Reference("sample", "test", 4, 64, lambda: iter([reference_images]))
    ctx = make_context(tmp_path, inception_file)
    whole = evaluate(["fid", "kid"], EvalInputs(images, reference=reference), ctx)
    stream = MetricStream(["fid", "kid"], ctx, reference)
    for index in (3, 1, 0, 2):  # one image a batch, in any order: each batch's features are placed by its index
        stream.add(index, EvalInputs(images[index:index + 1], reference=reference))
    # what the stream holds of a batch is where its features are on disk, not the features
    kept = stream.local()[0]["train.metrics.fid:inception_features"]
    assert sorted(kept) == [0, 1, 2, 3] and all(isinstance(rows, Rows) and rows.count == 1 for rows in kept.values())
    assert stream.result() == whole and whole["fid"] > 0


def test_fid_and_kid_of_features_spilled_to_disk_equal_those_of_all_features_at_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    # more samples than dimensions (FID's moments path, not the few-samples SVD), float32 as Inception gives them
    a = rng.normal(0.5, 1.0, size=(41, 6)).astype(np.float32)
    b = (rng.normal(1.0, 2.0, size=(30, 6)) @ rng.normal(size=(6, 6))).astype(np.float32)
    monkeypatch.setattr(fid, "CHUNK", 7)  # moments over several chunks, the last one short
    spill = Appender(tmp_path / "spill")
    mapped = assemble([spill.append(a[start:start + 8]) for start in range(0, len(a), 8)], tmp_path / "a.npy")
    whole_a, whole_b = a.astype(np.float64), b.astype(np.float64)
    assert np.array_equal(mapped, a)

    # the chunked float64 moments are the moments of all features at once, to float64 rounding
    gaussian = Gaussian(mapped)
    assert np.allclose(gaussian.mean, whole_a.mean(0), rtol=1e-13, atol=1e-15)
    assert np.allclose(gaussian.cov, np.cov(whole_a, rowvar=False), rtol=1e-12, atol=1e-14)
    cov_a, cov_b = np.cov(whole_a, rowvar=False), np.cov(whole_b, rowvar=False)
    expected = (np.sum((whole_a.mean(0) - whole_b.mean(0)) ** 2)
                + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real))
    assert frechet_distance(mapped, b) == pytest.approx(expected, rel=1e-9)
    # ... and exactly the FID of the same features held in memory, with the reference's Gaussian given or not
    assert frechet_distance(mapped, b) == frechet_distance(whole_a, whole_b) == \
        frechet_distance(mapped, b, Gaussian(b))

    # KID reads its subsets from the map: exactly torch-fidelity's KID of the features in memory
    reference = kid_features_to_metric(torch.from_numpy(whole_a), torch.from_numpy(whole_b), kid_subsets=5,
                                       kid_subset_size=20, rng_seed=7, verbose=False)
    assert kernel_distance(mapped, b, 5, 20, 7) == (reference["kernel_inception_distance_mean"],
                                                   reference["kernel_inception_distance_std"])
