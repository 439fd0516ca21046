"""How fast a stage went, for its one-line summary."""


def per_image(images: int, seconds: float) -> str:
    """`images` over `seconds` of wall time as images/s, or as s/image below one image a second (where a rounded
    "0.0 images/s" would say nothing)."""
    if images <= 0 or seconds <= 0:
        return "no rate (no images)"
    rate = images / seconds
    return f"{rate:.1f} images/s" if rate >= 1 else f"{seconds / images:.1f} s/image"
