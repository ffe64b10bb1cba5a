"""Typed image-loading failures: each carries a short machine-readable ``code`` and a reason string."""

from __future__ import annotations


class ImageLoadError(Exception):
    """An image reference that cannot be turned into pixels.

    ``reason`` is the short string that ends up in ``rejected.jsonl`` (``"<code>: <detail>"``).
    """

    code = "unreadable"

    def __init__(self, detail: str, path: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.path = path

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.reason}{where}"


class ImageMissing(ImageLoadError):
    code = "missing"


class ImageUnreadable(ImageLoadError):
    code = "unreadable"


class ImageTruncated(ImageLoadError):
    code = "truncated"


class ImageTooLarge(ImageLoadError):
    code = "too_large"


class NotAnImage(ImageLoadError):
    code = "not_an_image"


class NotARegularFile(ImageLoadError):
    """A directory, FIFO, socket or device: reading one could block forever or never end."""

    code = "not_a_regular_file"


class OutsideImageRoot(ImageLoadError):
    """A record path that resolves (``..``, absolute, symlink) outside the dataset root."""

    code = "outside_image_root"
