"""Poster images: decoded with Pillow and re-encoded, so that nothing but pixels is stored.

An upload is untrusted input. It must be the format its Content-Type names (JPEG, PNG or
WebP, nothing else is even tried), at most MAX_UPLOAD_BYTES, at most MAX_PIXELS once decoded
(the size is read from the header and checked before any pixel is decoded: a small file that
decodes huge, a decompression bomb, is refused), and decode completely (a truncated file is
refused). What is stored is a fresh image built from the pixels alone (no EXIF, GPS, ICC,
comments or trailing bytes), encoded as WebP: a full size (at most FULL_SIDE pixels a side)
and a thumbnail (THUMB_SIDE). Every refusal is an InvalidImageError (422), never a crash."""

from __future__ import annotations

import hashlib
import io
import threading

from PIL import Image, ImageOps, UnidentifiedImageError

from commands.errors import InvalidImageError
from commands.posters import PosterImage, PosterImages

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000  # 40 MP: more than any camera poster needs, about 160 MB decoded
FULL_SIDE = 2000
THUMB_SIDE = 400
STORED_TYPE = "image/webp"
WEBP_QUALITY = 85

# A decoded image may take MAX_PIXELS * 4 bytes: a few uploads at a time, not a hundred.
_DECODING = threading.BoundedSemaphore(2)


def media_type(content_type: str) -> str:
    """`image/png; charset=x` -> `image/png`."""
    return content_type.split(";", 1)[0].strip().lower()


def process_poster(data: bytes, content_type: str) -> PosterImages:
    """The full-size image and the thumbnail of an upload (implements ImageProcessor)."""
    declared = FORMATS.get(media_type(content_type))
    if declared is None:
        raise InvalidImageError(
            "a poster is a JPEG, PNG or WebP image sent with Content-Type image/jpeg, "
            f"image/png or image/webp, not {content_type[:100]!r}"
        )
    if not data:
        raise InvalidImageError("the image is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidImageError(f"the image is larger than {MAX_UPLOAD_BYTES} bytes")
    with _DECODING:
        try:
            pixels = _decode(data, declared)
            return PosterImages(
                full=_encoded(pixels, FULL_SIDE), thumb=_encoded(pixels, THUMB_SIDE)
            )
        except InvalidImageError:
            raise
        except UnidentifiedImageError as error:
            raise InvalidImageError(f"not a {declared} image") from error
        except Image.DecompressionBombError as error:
            raise InvalidImageError(f"the image decodes too large: {error}") from error
        except MemoryError:
            raise
        except Exception as error:  # Pillow's decoders raise many kinds on hostile input
            raise InvalidImageError(f"not a valid {declared} image: {error}") from error


def _decode(data: bytes, declared: str) -> Image.Image:
    """The upload's pixels (first frame), upright, as RGB or RGBA, with no metadata."""
    with Image.open(io.BytesIO(data), formats=[declared]) as probe:
        _check_size(probe.size)
        probe.verify()  # checksums and structure, without decoding the pixels
    with Image.open(io.BytesIO(data), formats=[declared]) as image:
        _check_size(image.size)
        # A JPEG may be decoded straight at a smaller scale (no effect on other formats).
        image.draft("RGB", (FULL_SIDE, FULL_SIDE))
        image.load()  # a truncated file raises here
        upright = ImageOps.exif_transpose(image)  # the pixels as the camera meant them
    return _pixels_only(upright)


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidImageError("the image has no pixels")
    if width * height > MAX_PIXELS:
        raise InvalidImageError(
            f"the image is {width}x{height} pixels: at most {MAX_PIXELS} pixels are accepted"
        )


def _pixels_only(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit grey: scale, not clip
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    transparent = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if image.mode == "La":
        image = image.convert("LA")
    mode = "RGBA" if transparent else "RGB"
    converted = image.convert(mode)
    # A new image from the raw pixels: no info, EXIF, ICC profile or text chunk comes along.
    return Image.frombytes(mode, converted.size, converted.tobytes())


def _encoded(pixels: Image.Image, side: int) -> PosterImage:
    image = pixels.copy()
    image.thumbnail((side, side), Image.Resampling.LANCZOS)  # only ever shrinks
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=WEBP_QUALITY)
    data = buffer.getvalue()
    return PosterImage(
        data=data,
        content_type=STORED_TYPE,
        width=image.width,
        height=image.height,
        etag=hashlib.sha256(data).hexdigest(),
    )
