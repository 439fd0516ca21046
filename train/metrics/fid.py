"""FID and KID with torch-fidelity's InceptionV3 (the TF 2015-12-05 graph ported to PyTorch), its weights coming
through the project's weight registry; the reference set's features are cached on disk per reference set (its
name), split, resolution, extractor version, weights file and image count.

Features are float32 [N, 2048] arrays, mapped from disk in evaluation (`feature_files`): FID reads them in
chunks of CHUNK rows into float64 moments (mean, then the centred scatter: two passes in row order, so the same
rows give the same numbers however they were computed), KID reads its random subsets. Memory holds a chunk and
the 2048 x 2048 moments, whatever the number of images. The reference's moments and the square root of its
covariance are computed once per run (`EvalContext.model`), not once per condition."""
import hashlib
import importlib.metadata
import io
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shardio.shards import atomic_path

from .base import EvalContext, EvalInputs, MetricError, Reference, batches, check_images
from .feature_files import Appender, assemble, load

FEATURE = "2048"  # pool3 features, the layer FID and KID are defined on
EXTRACTOR = f"torch-fidelity-{importlib.metadata.version('torch-fidelity')}-inception-v3-compat-{FEATURE}"
CHUNK = 2048  # feature rows read at a time (16 MB in float64)


def load_inception(weights: str, weights_dir: Path, device: str = "cpu"):
    """torch-fidelity's InceptionV3 feature extractor with the weights `weights` (a registry name or a file path),
    loaded strictly; returns (extractor, sha256 of the weights file)."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from annotators.weights import WeightsError, resolve

    path = resolve(weights, weights_dir)
    data = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same actionable message
        raise WeightsError(f"Inception weights {path} are not a readable torch state dict: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"Inception weights {path} are not a state dict of tensors")
    # torch-fidelity loads the file it is given with weights_only=False; handing it a re-serialised copy of the
    # state dict we loaded with weights_only=True keeps untrusted pickles away from the full unpickler.
    checked = io.BytesIO()
    torch.save(state, checked)
    checked.seek(0)
    try:
        extractor = FeatureExtractorInceptionV3("inception-v3-compat", [FEATURE],
                                                feature_extractor_weights_path=checked)
    except RuntimeError as err:  # load_state_dict(strict=True): missing, unexpected or mis-shaped keys
        raise WeightsError(f"Inception weights {path} do not match torch-fidelity's InceptionV3 layout "
                           f"(the pytorch-fid / torch-fidelity pt_inception-2015-12-05 file): {err}") from None
    return extractor.to(device), hashlib.sha256(data).hexdigest()


def _inception(ctx: EvalContext):
    return ctx.model("inception", lambda: load_inception(ctx.params.inception_weights, ctx.weights_dir, ctx.device))


def extract_features(images_batches, ctx: EvalContext, desc: str, progress: bool = True) -> np.ndarray:
    """Inception pool features (float64 [N, 2048]) of uint8 image batches."""
    import torch

    extractor, _ = _inception(ctx)
    features = []
    with torch.no_grad(), tqdm(desc=desc, unit="img", leave=False, disable=not progress) as bar:
        for batch in images_batches:
            x = torch.from_numpy(np.ascontiguousarray(check_images(desc, batch))).permute(0, 3, 1, 2).to(ctx.device)
            features.append(extractor(x)[0].double().cpu().numpy())
            bar.update(len(batch))
    if not features:
        raise MetricError(f"{desc}: no images")
    return np.concatenate(features)


def generated_features(images: np.ndarray, ctx: EvalContext, what: str = "generated") -> np.ndarray:
    """Inception features (float64 [N, 2048]) of generated images (or others: `what` they are), in batches of
    `evaluate.batch_size`."""
    check_images(what, images)
    return extract_features(batches(images, ctx.params.batch_size), ctx, f"inception: {what}", progress=False)


def image_features(images: np.ndarray, ctx: EvalContext, what: str = "generated") -> np.ndarray:
    """What FID and KID keep of a batch of images: its Inception features, as float32 (the extractor's own
    precision: widening them again later is exact, and they take half the memory)."""
    return generated_features(images, ctx, what).astype(np.float32)


def inception_features(inputs: EvalInputs, ctx: EvalContext) -> np.ndarray:
    """What FID and KID keep of a batch of generated images (`image_features`)."""
    return image_features(inputs.generated, ctx)


def reference_cache_path(ref: Reference, weights_sha256: str, cache_dir: Path) -> Path:
    """Where the features of `ref` are cached: one file per dataset, split, resolution, extractor, weights and
    image limit."""
    name = f"{ref.dataset}-{ref.split}-{ref.resolution}px-{EXTRACTOR}-{weights_sha256[:16]}-n{ref.limit}.npy"
    return Path(cache_dir) / name


def reference_features(ref: Reference, ctx: EvalContext) -> np.ndarray:
    """Inception features of the reference set (float32 [N, 2048], mapped from the cache file), read from the
    cache, else its own (`ref.features`) or computed from its images a batch at a time, and cached."""
    _, weights_sha256 = _inception(ctx)
    path = reference_cache_path(ref, weights_sha256, ctx.cache_dir)
    if not path.is_file():
        parts = ref.features
        if parts is None:
            spill = Appender(ctx.scratch())
            parts = [spill.append(extract_features([batch], ctx, f"inception: {ref.dataset}/{ref.split}", False))
                     for batch in _limited(ref.batches(), ref.limit)]
        if not parts:
            raise MetricError(f"inception: {ref.dataset}/{ref.split}: no images")
        with atomic_path(path) as tmp:
            assemble(parts, tmp)
    return load(path)


def _limited(images_batches, limit: int | None):
    """The uint8 image batches, cut to at most `limit` images in all."""
    seen = 0
    for batch in images_batches:
        if limit is not None and seen >= limit:
            return
        batch = batch[: None if limit is None else limit - seen]
        seen += len(batch)
        yield batch


class Gaussian:
    """The mean and covariance (float64, unbiased) of a feature set [N, D] (an array or a map of a file), read in
    chunks of CHUNK rows in row order: the mean, then the scatter of the centred rows."""

    def __init__(self, features: np.ndarray):
        self.count, dim = features.shape
        if self.count < 2:
            raise MetricError(f"a Gaussian needs at least 2 feature rows, got {self.count}")
        total = np.zeros(dim)
        for start in range(0, self.count, CHUNK):
            total += np.asarray(features[start:start + CHUNK], np.float64).sum(0)
        self.mean = total / self.count
        scatter = np.zeros((dim, dim))
        for start in range(0, self.count, CHUNK):
            centred = np.asarray(features[start:start + CHUNK], np.float64) - self.mean
            scatter += centred.T @ centred
        self.cov = scatter / (self.count - 1)
        self._root = None

    @property
    def root(self) -> np.ndarray:
        """The covariance's PSD square root (one symmetric eigendecomposition, on first use)."""
        if self._root is None:
            self._root = psd_root(self.cov)
        return self._root


def psd_root(sigma: np.ndarray) -> np.ndarray:
    """The symmetric PSD square root of a covariance matrix, from its symmetric eigendecomposition (negative
    rounding noise in the eigenvalues clipped to 0)."""
    values, vectors = np.linalg.eigh(sigma)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, gaussian_b: Gaussian | None = None) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets [N, D] (FID on Inception features):
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2), with the unbiased covariances torch-fidelity fits.
    `gaussian_b`: `Gaussian(features_b)` when the caller keeps it (the reference's, across conditions)."""
    a, b = Gaussian(features_a), gaussian_b or Gaussian(features_b)
    diff = a.mean - b.mean
    if max(a.count, b.count) <= features_a.shape[1]:  # at most D rows each: they fit in memory whatever N
        root_trace = trace_sqrt_product_of_few(*(np.asarray(f, np.float64) for f in (features_a, features_b)))
    else:
        root_trace = trace_sqrt_product(a.cov, b.cov, b.root)
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * root_trace)


def trace_sqrt_product_of_few(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """tr((S_a S_b)^1/2) of the two sets' covariances when they have fewer samples than dimensions: with the
    centred features A [N_a, D] and B [N_b, D], S_a S_b = A'A B'B / c (c = (N_a - 1)(N_b - 1)) has the nonzero
    eigenvalues of (AB')(AB')' / c, so the trace is the sum of AB''s singular values over sqrt(c). An N_a x N_b SVD
    instead of two D x D eigendecompositions (D = 2048, 4 and 2 samples: the whole distance in 3.2 CPU s instead
    of 18.6, measured with time.process_time on the loaded 2-core machine)."""
    centred_a, centred_b = features_a - features_a.mean(0), features_b - features_b.mean(0)
    singular = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False)
    return float(singular.sum() / np.sqrt((len(features_a) - 1) * (len(features_b) - 1)))


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray, root_b: np.ndarray | None = None) -> float:
    """tr((S_a S_b)^1/2) of two covariance matrices: S_a S_b is similar to the symmetric PSD S_b^1/2 S_a S_b^1/2,
    so their eigenvalues agree; one symmetric eigendecomposition for S_b's root (`root_b` when the caller has it)
    and one for the product. torch-fidelity takes the general eigvals of S_a S_b instead, which at D = 2048 costs
    ~10x more (seconds per condition; half of a small evaluation)."""
    root_b = psd_root(sigma_b) if root_b is None else root_b
    inner = root_b @ sigma_a @ root_b
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int, subset_size: int,
                    seed: int) -> tuple[float, float]:
    """KID: mean and std over random subsets of the unbiased squared MMD with the cubic polynomial kernel (the
    subset size capped at the smaller set's size), each subset read from the feature sets (arrays or maps of
    files) and widened to float64; the subsets are drawn as torch-fidelity draws them (`np.random.RandomState`
    of `seed`, each subset without replacement, the first set's then the second's), and scored by its
    `kernel_mmd`."""
    from torch_fidelity.metric_kid import kernel_mmd

    size = min(subset_size, len(features_a), len(features_b))
    rng = np.random.RandomState(seed)
    mmds = []
    for _ in range(subsets):
        a = np.asarray(features_a[rng.choice(len(features_a), size, replace=False)], np.float64)
        b = np.asarray(features_b[rng.choice(len(features_b), size, replace=False)], np.float64)
        mmds.append(kernel_mmd(a, b))
    return float(np.mean(mmds)), float(np.std(mmds))


def _reference(reference: Reference | None, ctx: EvalContext, metric: str) -> np.ndarray:
    if reference is None:
        raise MetricError(f"metric {metric!r} needs a reference set")
    return reference_features(reference, ctx)


def fid(features: np.ndarray, ctx: EvalContext, reference: Reference | None) -> dict[str, float]:
    """FID of the generated images (their features [N, D], in batch order) against the reference set, whose
    Gaussian is fitted once per run."""
    real = _reference(reference, ctx, "fid")
    gaussian = ctx.model(f"gaussian of {real.filename}", lambda: Gaussian(real))
    return {"fid": frechet_distance(features, real, gaussian)}


def kid(features: np.ndarray, ctx: EvalContext, reference: Reference | None) -> dict[str, float]:
    """KID (mean and std over subsets) of the generated images (their features [N, D], in batch order) against the
    reference set."""
    mean, std = kernel_distance(features, _reference(reference, ctx, "kid"), ctx.params.kid_subsets,
                                ctx.params.kid_subset_size, ctx.params.seed)
    return {"kid": mean, "kid_std": std}
