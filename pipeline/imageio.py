"""Bounded image decoding for ingest: header checks before any pixel is decoded, full decode, EXIF orientation,
conversion of every pixel format to 8-bit RGB (alpha on white), and the stored JPEG (original bytes when they
already qualify). Problems raise `Rejected` with a short reason code that lands in rejects.parquet."""
import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .params.stages import IngestParams

# Decoders ingest lets PIL use (camera JPEGs with a preview frame open through JPEG as format "MPO").
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
WHITE = (255, 255, 255)
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (the EXIF 2.3 table, as PIL's exif_transpose).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS = (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError, Image.DecompressionBombError)


class Rejected(Exception):
    """An input that cannot be used; `reason` is a short code, `detail` says what exactly."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Stored:
    """The JPEG stored for one image, its size, and the EXIF orientation that was applied to reach it."""

    jpg: bytes
    width: int
    height: int
    orientation: int
    reused: bool  # True when `jpg` is the source's own bytes


def set_pil_limits(max_pixels: int) -> None:
    """Make PIL itself refuse images above `max_pixels` (its decompression-bomb guard) in this process."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


@contextmanager
def pil_limits(max_pixels: int):
    """`set_pil_limits` for the duration of a block; the previous limits come back afterwards."""
    previous = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        set_pil_limits(max_pixels)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def check_size(width: int, height: int, limits: IngestParams) -> None:
    """Reject a size beyond the limits: too many pixels, too small, too elongated."""
    if width * height > limits.max_pixels:
        raise Rejected("too_large", f"{width}x{height} is more than max_pixels={limits.max_pixels}")
    if min(width, height) < limits.min_size:
        raise Rejected("too_small", f"{width}x{height}: shorter side below min_size={limits.min_size}")
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise Rejected("aspect", f"{width}x{height}: aspect ratio above max_aspect={limits.max_aspect}")


def open_checked(data: bytes, limits: IngestParams, formats=FORMATS) -> Image.Image:
    """Parse only the header and check the size, so no pixel of an oversized image is ever decoded."""
    if not data:
        raise Rejected("empty", "zero bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise Rejected("too_large", str(e)) from None
    except UnidentifiedImageError:
        raise Rejected("not_an_image", f"no {'/'.join(formats)} header") from None
    except DECODE_ERRORS as e:
        raise Rejected("undecodable", f"bad header: {e}") from None
    check_size(*image.size, limits)
    return image


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright; unknown values count as upright)."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except DECODE_ERRORS:
        return 1
    return value if value in UPRIGHT else 1


def stored_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """The size an image is stored at: short side at most `max_short_side`, aspect kept, never upscaled."""
    short = min(width, height)
    if short <= max_short_side:
        return width, height
    scale = max_short_side / short
    if width <= height:
        return max_short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_short_side


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode: 16-bit scaled down, palette and alpha composited on white."""
    if image.mode in SIXTEEN_BIT:
        wide = np.asarray(image).astype(np.int64)
        image = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L")
    elif image.mode == "F":
        raise Rejected("undecodable", "floating-point pixels have no defined 8-bit range")
    if "transparency" in image.info or image.mode in ("P", "PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, WHITE)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def store_jpeg(data: bytes, limits: IngestParams) -> Stored:
    """Fully decode `data` and return the JPEG to store; raise Rejected for anything unusable."""
    image = open_checked(data, limits)
    size = image.size
    if image.format in ("JPEG", "MPO"):  # EXIF sits in the header here, so the target is known before decoding
        target = stored_size(*upright_size(size, orientation(image)), limits.max_short_side)
        if target != upright_size(size, orientation(image)):
            # DCT-domain downscale while decoding (every scan is still read, so truncation is still caught).
            image.draft(image.mode, upright_size(target, orientation(image)))
    try:
        image.load()
    except DECODE_ERRORS as e:
        raise Rejected("undecodable", str(e) or type(e).__name__) from None
    turn = orientation(image)  # other formats may keep EXIF after the pixels: read it once they are loaded
    target = stored_size(*upright_size(size, turn), limits.max_short_side)
    if image.format == "JPEG" and image.mode == "RGB" and turn == 1 and target == size:
        return Stored(data, *size, turn, reused=True)
    if turn in UPRIGHT:
        image = image.transpose(UPRIGHT[turn])
    rgb = to_rgb(image)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=limits.jpeg_quality)
    return Stored(buffer.getvalue(), *target, turn, reused=False)


def upright_size(size: tuple[int, int], turn: int) -> tuple[int, int]:
    """The size after the EXIF orientation `turn` is applied (width and height swap for quarter turns)."""
    return size[::-1] if UPRIGHT.get(turn) in _SWAPS else size


def decode_labels(data: bytes, max_pixels: int) -> np.ndarray:
    """A uint8 class-id map from a PNG (gray, palette indices, or equal RGB channels); bounded like images."""
    limits = IngestParams(min_size=1, max_pixels=max_pixels, max_aspect=1e9)
    image = open_checked(data, limits, formats=("PNG",))
    try:
        image.load()
    except DECODE_ERRORS as e:
        raise Rejected("bad_seg", f"undecodable label map: {e}") from None
    labels = np.asarray(image)
    if labels.ndim == 3:
        if not (labels[..., :3] == labels[..., :1]).all():
            raise Rejected("bad_seg", "colour label map: expected class ids (gray or palette indices)")
        labels = labels[..., 0]
    if labels.dtype != np.uint8:
        if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
            raise Rejected("bad_seg", "class ids above 255")
        labels = labels.astype(np.uint8)
    return labels


def fit_labels(labels: np.ndarray, stored: Stored) -> np.ndarray:
    """Labels of the source pixel grid turned like the image and resized (nearest) to the stored size."""
    image = _upright_on(labels, stored, "bad_seg", "label map")
    if image.size != (stored.width, stored.height):
        image = image.resize((stored.width, stored.height), Image.Resampling.NEAREST)
    return np.asarray(image)


def decode_sketch(data: bytes, max_pixels: int) -> np.ndarray:
    """A uint8 stroke map (255 = stroke) from a PNG or JPEG drawing of dark lines on a light ground (the
    sketch-simplification output MM-CelebA-HQ ships): a pixel darker than mid-grey is a stroke. Binarising here,
    at the drawing's own resolution, also removes JPEG ringing and anti-aliasing before any resize."""
    limits = IngestParams(min_size=1, max_pixels=max_pixels, max_aspect=1e9)
    image = open_checked(data, limits, formats=("PNG", "JPEG"))
    try:
        image.load()
    except DECODE_ERRORS as e:
        raise Rejected("bad_sketch", f"undecodable sketch: {e}") from None
    gray = np.asarray(to_rgb(image).convert("L"))
    return np.where(gray < 128, 255, 0).astype(np.uint8)


def fit_sketch(strokes: np.ndarray, stored: Stored) -> np.ndarray:
    """A stroke map of the source pixel grid turned like the image and resized to the stored size, still binary.
    Enlarging uses nearest (strokes widen with the image); shrinking averages the source pixels under each target
    pixel (box filter) and keeps it as stroke if any of them is one, so a line thinner than the scale factor is
    kept, where nearest or a 50% coverage threshold would drop it."""
    return resize_strokes(np.asarray(_upright_on(strokes, stored, "bad_sketch", "sketch")),
                          (stored.width, stored.height))


def resize_strokes(strokes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A binary stroke map resized to `size` (width, height), still binary, as `fit_sketch` says."""
    image = Image.fromarray(strokes)
    if image.size == size:
        return strokes
    if image.width * image.height < size[0] * size[1]:
        return np.asarray(image.resize(size, Image.Resampling.NEAREST))
    coverage = np.asarray(image.convert("F").resize(size, Image.Resampling.BOX))
    return np.where(coverage > 0, 255, 0).astype(np.uint8)


def _upright_on(array: np.ndarray, stored: Stored, reason: str, what: str) -> Image.Image:
    """`array` as an image turned like the stored image; Rejected (`reason`) when its aspect differs."""
    image = Image.fromarray(array)
    if stored.orientation in UPRIGHT:
        image = image.transpose(UPRIGHT[stored.orientation])
    width, height = image.size
    if abs(width * stored.height - height * stored.width) > 0.01 * width * stored.height:
        raise Rejected(reason, f"{what} {width}x{height} does not match the image's aspect "
                               f"({stored.width}x{stored.height})")
    return image


def encode_png(labels: np.ndarray) -> bytes:
    """Lossless PNG bytes of a uint8 map."""
    buffer = io.BytesIO()
    Image.fromarray(labels).save(buffer, "PNG")
    return buffer.getvalue()
