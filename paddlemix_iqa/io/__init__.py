"""Image loading: references -> RGB uint8 pixels, with typed errors."""

from .errors import (
    ImageLoadError,
    ImageMissing,
    ImageTooLarge,
    ImageTruncated,
    ImageUnreadable,
    NotAnImage,
    NotARegularFile,
    OutsideImageRoot,
)
from .loading import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    decode_image,
    decode_or_error,
    image_exif,
    load_image,
    max_pixels_limit,
    probe_image,
    resolve_path,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "ImageLoadError",
    "ImageMissing",
    "ImageTooLarge",
    "ImageTruncated",
    "ImageUnreadable",
    "NotARegularFile",
    "NotAnImage",
    "OutsideImageRoot",
    "decode_image",
    "decode_or_error",
    "load_image",
    "max_pixels_limit",
    "image_exif",
    "probe_image",
    "resolve_path",
]
