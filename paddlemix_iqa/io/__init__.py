"""Image loading: references -> RGB uint8 pixels, with typed errors."""

from .errors import (
    ImageLoadError,
    ImageMissing,
    ImageTooLarge,
    ImageTruncated,
    ImageUnreadable,
    NotAnImage,
)
from .loading import DecodedImage, decode_image, decode_or_error, load_image, probe_image, resolve_path

__all__ = [
    "DecodedImage",
    "ImageLoadError",
    "ImageMissing",
    "ImageTooLarge",
    "ImageTruncated",
    "ImageUnreadable",
    "NotAnImage",
    "decode_image",
    "decode_or_error",
    "load_image",
    "probe_image",
    "resolve_path",
]
