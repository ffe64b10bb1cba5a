"""Where model weights live: an explicit path, ``$PADDLEMIX_IQA_HOME/<name>``, or the default cache.

Scoring never downloads. A missing file is an error that names every place looked
at and the command that puts the weights there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

ENV_HOME = "PADDLEMIX_IQA_HOME"


class WeightsNotFound(FileNotFoundError):
    """Raised when a model's files are in none of the places the locator looks."""


def weights_home() -> Path:
    """``$PADDLEMIX_IQA_HOME``, else ``$XDG_CACHE_HOME/paddlemix_iqa`` (``~/.cache/paddlemix_iqa``)."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "paddlemix_iqa"


def _has(directory: Path, required: Sequence[str | tuple[str, ...]]) -> bool:
    """Each entry must exist; a tuple entry is satisfied by any one of its names."""
    return directory.is_dir() and all(
        any((directory / name).is_file() for name in ((need,) if isinstance(need, str) else need))
        for need in required
    )


def locate_weights(
    name: str,
    required: Sequence[str | tuple[str, ...]],
    path: str | os.PathLike | None = None,
    how_to: str = "",
) -> Path:
    """The directory holding model ``name``'s ``required`` files.

    Looks at ``path`` when given (and only there), else ``weights_home() / name``.
    """
    candidates = [Path(path).expanduser()] if path else [weights_home() / name]
    for directory in candidates:
        if _has(directory, required):
            return directory
    wanted = ", ".join(n if isinstance(n, str) else " or ".join(n) for n in required)
    looked = ", ".join(str(c) for c in candidates)
    message = (
        f"weights for {name!r} not found: looked for {wanted} in {looked}. "
        f"Pass the directory explicitly, or set {ENV_HOME} to a folder holding '{name}/'."
    )
    if how_to:
        message += f" To get them: {how_to}"
    raise WeightsNotFound(message)
