"""Robust image loading: EXIF orientation, grayscale, alpha, 16-bit and palette images.

Every image in the project is read through `load_rgb`, so the pixels a model sees and the
pixels a mask was checked against are oriented the same way (EXIF orientation applied).

Size limit: `load_rgb` refuses an image with more than `max_pixels` pixels (default
DEFAULT_MAX_PIXELS, 150 million: an 80-megapixel photo passes, a "decompression bomb" whose
header claims billions of pixels does not) with an `ImageReadError`, before decoding it. This
explicit limit replaces PIL's own process-wide one (`Image.MAX_IMAGE_PIXELS`), which is
switched off only while a header is parsed here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# EXIF orientation tag and the PIL transpose that undoes each value (as ImageOps.exif_transpose).
ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Largest image `load_rgb` decodes by default: 150 million pixels (about 450 MB as RGB).
DEFAULT_MAX_PIXELS = 150_000_000
_PIL_LIMIT_LOCK = threading.Lock()


class ImageReadError(ValueError):
    """An image file that cannot be read (missing, truncated, corrupt or of an unknown type)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


@dataclass(frozen=True)
class ImageInfo:
    """Header facts of an image file: stored size, EXIF orientation and the size after it."""

    raw_width: int
    raw_height: int
    orientation: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation is applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.raw_height, self.raw_width
        return self.raw_width, self.raw_height


def is_image_file(path: Path) -> bool:
    """True for the file types an export may hold as images."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block is treated as "no orientation"
        return 1
    return value if value in EXIF_TRANSPOSE else 1


@contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """`Image.open` with PIL's own pixel limit off (this module applies `max_pixels`).

    Every failure, whatever its type, becomes an `ImageReadError` naming the file.
    """
    try:
        with _PIL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except FileNotFoundError as exc:
        raise ImageReadError(path, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not a recognised image file") from exc
    except Exception as exc:  # any decoder failure is this file's problem
        raise ImageReadError(path, f"unreadable header ({type(exc).__name__}: {exc})") from exc
    with im:
        yield im


def check_pixels(path: str | os.PathLike[str], size: tuple[int, int], max_pixels: int) -> None:
    """Raise `ImageReadError` when an image of `size` (width, height) exceeds `max_pixels`."""
    width, height = size
    if width < 1 or height < 1:
        raise ImageReadError(path, f"degenerate size {width}x{height}")
    if max_pixels and width * height > max_pixels:
        raise ImageReadError(
            path,
            f"{width}x{height} is {width * height / 1e6:.1f} million pixels, above the limit of "
            f"{max_pixels / 1e6:.1f} million (raise max_pixels / --max-pixels to read it)",
        )


def image_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Read size and EXIF orientation from the file header only (no full decode, no limit)."""
    path = Path(path)
    with _open_image(path) as im:
        width, height = im.size
        return ImageInfo(width, height, _orientation(im))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of the image as `load_rgb` returns it (EXIF orientation applied)."""
    return image_info(path).size


def _to_uint8(arr: np.ndarray, top: int | None = None) -> np.ndarray:
    """Scale 16-bit (or 32-bit integer / float) single-channel data to 0..255.

    `top` is the full-scale value when the file states its depth (65535 for 16-bit data, so a
    dark 16-bit image stays dark); otherwise integer data above 255 is taken as 16-bit.
    """
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64))
        top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        return np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    top = top or (65535 if arr.max(initial=0) > 255 else 255)
    return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an (H, W, 3) uint8 array; transparency is composited on white."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        gray = _to_uint8(np.asarray(im), 65535 if im.mode.startswith("I;16") else None)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_rgb(
    path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an image as (H, W, 3) uint8 RGB with its EXIF orientation applied.

    Grayscale is repeated over three channels, alpha is composited on white, 16-bit data is
    scaled to 8 bits and palette images are expanded. A missing, truncated or corrupt file,
    or one with more than `max_pixels` pixels (None: no limit), raises `ImageReadError`
    naming the file.
    """
    path = Path(path)
    with _open_image(path) as im:
        check_pixels(path, im.size, max_pixels or 0)
        try:
            im.load()  # decodes everything: a truncated file fails here
            oriented = ImageOps.exif_transpose(im)
            return _pil_to_rgb(oriented)
        except MemoryError as exc:
            raise ImageReadError(path, f"too large to decode ({im.size[0]}x{im.size[1]})") from exc
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageReadError(path, f"corrupt or truncated ({exc})") from exc


def orient_like_exif(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply to `array` (a mask in stored pixel order) the transpose EXIF `orientation` asks for."""
    method = EXIF_TRANSPOSE.get(orientation)
    if method is None:
        return array
    return np.asarray(Image.fromarray(array).transpose(method)).copy()
