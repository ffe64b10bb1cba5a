"""Sanity ops that need no metric: decodable, resolution, aspect ratio, file size.

Resolution, aspect ratio and file size read only the image header (no pixel
decode) when run on their own; inside a pipeline they reuse the shared decode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated

from ..io import DecodedImage
from ..params import Bounds, check_params
from ..registry import register_op
from .base import ImageOp, Judgement, range_reason


@register_op("decodable_filter")
class DecodableFilter(ImageOp):
    """Drop items whose image cannot be fully decoded (truncated, corrupt, not an image, too large)."""

    metric = "decodable"

    @property
    def decode_side(self) -> int | None:
        # JPEG draft decoding still reads every entropy-coded byte, so truncation is still caught
        return 256

    def judge(self, images: Sequence[DecodedImage]) -> list[Judgement]:
        return [Judgement(value=1.0) for _ in images]


@register_op("resolution_filter")
class ResolutionFilter(ImageOp):
    """Keep images whose width and height are within bounds (pixels, after EXIF orientation)."""

    metric = "resolution"
    needs_pixels = False

    def __init__(
        self,
        min_width: Annotated[int | None, Bounds(1, threshold="width")] = None,
        max_width: Annotated[int | None, Bounds(1, threshold="width")] = None,
        min_height: Annotated[int | None, Bounds(1, threshold="height")] = None,
        max_height: Annotated[int | None, Bounds(1, threshold="height")] = None,
        **kwargs,
    ):
        check_params(ResolutionFilter.__init__, locals())
        super().__init__(**kwargs)
        self.min_width, self.max_width = min_width, max_width
        self.min_height, self.max_height = min_height, max_height

    def judge(self, images):
        return [
            Judgement(
                value=float(min(img.width, img.height)),
                reason=range_reason("width", img.width, self.min_width, self.max_width)
                or range_reason("height", img.height, self.min_height, self.max_height),
            )
            for img in images
        ]

    def params(self):
        return {**self.thresholds(), **super().params()}


@register_op("aspect_ratio_filter")
class AspectRatioFilter(ImageOp):
    """Keep images whose width / height is within [min_ratio, max_ratio] (the host's image_ration_filter)."""

    metric = "aspect_ratio"
    needs_pixels = False

    def __init__(
        self,
        min_ratio: Annotated[float | None, Bounds(0.0, threshold="ratio")] = 1 / 3,
        max_ratio: Annotated[float | None, Bounds(0.0, threshold="ratio")] = 3.0,
        **kwargs,
    ):
        check_params(AspectRatioFilter.__init__, locals())
        super().__init__(**kwargs)
        self.min_ratio, self.max_ratio = min_ratio, max_ratio

    def judge(self, images):
        verdicts = []
        for img in images:
            ratio = img.width / img.height
            verdicts.append(
                Judgement(
                    value=ratio, reason=range_reason("aspect ratio", ratio, self.min_ratio, self.max_ratio)
                )
            )
        return verdicts

    def params(self):
        return {**self.thresholds(), **super().params()}


_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1024,
    "KIB": 1024,
    "MB": 1024**2,
    "MIB": 1024**2,
    "GB": 1024**3,
    "GIB": 1024**3,
}


def parse_size(size: int | float | str | None, name: str = "size") -> int | None:
    """``"20KB"`` / ``"1.5 MB"`` / ``4096`` to bytes (binary units, as data-juicer reads them)."""
    if size is None:
        return None
    if isinstance(size, (int, float)) and not isinstance(size, bool) and math.isfinite(size):
        return int(size)
    match = re.fullmatch(r"\s*(\d+\.?\d*|\.\d+)\s*([A-Za-z]*)\s*", size) if isinstance(size, str) else None
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"{name}: cannot read {size!r} as a file size (examples: 2048, '20KB', '1.5MB')")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


@register_op("filesize_filter")
class FileSizeFilter(ImageOp):
    """Keep images whose file size is within [min_size, max_size] (bytes, or strings like "20KB")."""

    metric = "file_size"
    needs_pixels = False

    def __init__(
        self,
        min_size: Annotated[int | float | str | None, Bounds(0, threshold="file size")] = None,
        max_size: Annotated[int | float | str | None, Bounds(0, threshold="file size")] = None,
        **kwargs,
    ):
        self.min_size, self.max_size = parse_size(min_size, "min_size"), parse_size(max_size, "max_size")
        check_params(FileSizeFilter.__init__, {"min_size": self.min_size, "max_size": self.max_size})
        super().__init__(**kwargs)

    def judge(self, images):
        return [
            Judgement(
                value=float(img.file_size),
                reason=range_reason("file size", img.file_size, self.min_size, self.max_size),
            )
            for img in images
        ]

    def params(self):
        return {**self.thresholds(), **super().params()}
