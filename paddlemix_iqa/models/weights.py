"""Where model weights live: an explicit path, ``$PADDLEMIX_IQA_HOME/<name>``, or the default cache.

Scoring never downloads. A missing file is an error that names every place looked
at and the command that puts the weights there (from :mod:`.catalog`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .catalog import MODELS, Need

ENV_HOME = "PADDLEMIX_IQA_HOME"


class WeightsNotFound(FileNotFoundError):
    """Raised when a model's files are in none of the places the locator looks."""


def weights_home() -> Path:
    """``$PADDLEMIX_IQA_HOME``, else ``$XDG_CACHE_HOME/paddlemix_iqa`` (``~/.cache/paddlemix_iqa``)."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "paddlemix_iqa"


def _missing(directory: Path, required: Sequence[Need]) -> list[str]:
    """The entries of ``required`` not in ``directory``; a tuple entry is satisfied by any one of its names."""
    return [
        need if isinstance(need, str) else " or ".join(need)
        for need in required
        if not any((directory / n).is_file() for n in ((need,) if isinstance(need, str) else need))
    ]


@dataclass
class WeightsStatus:
    """What ``weights list`` shows for one catalogue model."""

    name: str
    directory: Path  # where the locator looks (and found the files, when present)
    missing: list[str]  # files of the default variant not there
    variants: list[str]  # the variants whose extra file is there (ARNIQA regressors)

    @property
    def present(self) -> bool:
        return not self.missing


def weights_status(name: str, path: str | os.PathLike | None = None) -> WeightsStatus:
    """Present or missing, without raising: for listings."""
    model = MODELS[name]
    directory = Path(path).expanduser() if path else weights_home() / name
    variants = [v for v in model.variants if not _missing(directory, model.required(v)[len(model.files) :])]
    return WeightsStatus(name, directory, _missing(directory, model.required()), variants)


def locate_weights(
    name: str,
    required: Sequence[Need] | None = None,
    path: str | os.PathLike | None = None,
    how_to: str | None = None,
    variant: str | None = None,
) -> Path:
    """The directory holding model ``name``'s files.

    Looks at ``path`` when given (and only there), else ``weights_home() / name``.
    ``required`` and ``how_to`` default to the catalogue's entry (for ``variant``);
    a model outside the catalogue passes its own.
    """
    model = MODELS.get(name)
    if required is None:
        if model is None:
            raise KeyError(f"model {name!r} is not in the catalogue; pass its required files")
        required = model.required(variant)
    directory = Path(path).expanduser() if path else weights_home() / name
    missing = _missing(directory, required)
    if not missing:
        return directory
    if how_to is None and model is not None:
        how_to = model.how_to(variant, out=str(directory))
    where = f"{directory}" + ("" if directory.is_dir() else " (no such folder)")
    message = (
        f"weights for {name!r} not found: looked for {', '.join(missing)} in {where}. "
        f"Pass the model's folder explicitly, or point --weights-dir or ${ENV_HOME} at a folder "
        f"holding '{name}/'."
    )
    if how_to:
        message += f" To get them: {how_to}"
    raise WeightsNotFound(message)
