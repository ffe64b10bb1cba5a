"""``paddlemix-iqa weights download NAME``: fetch an official model tarball, check it, unpack it into the cache.

This is the only place the package touches the network, and only when a user
runs it. What to fetch comes from :mod:`.catalog`. The tarball must be a valid tar
holding the inference files, with no member that escapes the target folder
(absolute paths, ``..``, links, devices); its sha256 is checked when pinned (a
mismatch keeps nothing). The model files land flat in ``weights_home()/<name>/``
(or ``--weights-dir DIR/<name>/``), where the scorers look.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .catalog import MODELS, Need
from .inference import PARAMS_FILE, PROGRAM_FILES
from .weights import weights_home

log = logging.getLogger(__name__)

#: a PaddleClas inference folder (what a tarball from --url for another name must hold)
INFERENCE_FILES: tuple[Need, ...] = (PROGRAM_FILES, PARAMS_FILE)
TIMEOUT = 60  # seconds without data before giving up


class DownloadError(RuntimeError):
    """The download failed, or the file is not a safe tarball of the expected model."""


def _fetch(url: str, dest: Path) -> str:
    """Stream ``url`` to ``dest``; return the sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        # the package's only network access, reached from the user-run `weights download` command
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response, dest.open("wb") as out:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:  # URLError, HTTPError and socket errors are all OSErrors
        raise DownloadError(f"could not download {url}: {exc}") from exc
    return digest.hexdigest()


def _model_members(archive: tarfile.TarFile, required: Sequence[Need]) -> dict[str, tarfile.TarInfo]:
    """Validate every member and return the model files (base name -> member) of the one model folder."""
    files: dict[str, tarfile.TarInfo] = {}
    folders = set()
    for member in archive.getmembers():
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")):
            raise DownloadError(f"unsafe path in tarball: {member.name!r}")
        if member.issym() or member.islnk() or member.isdev() or member.isfifo():
            raise DownloadError(f"tarball member {member.name!r} is a link or device; refusing it")
        if member.isfile() and path.name.startswith("inference."):
            if path.name in files:
                raise DownloadError(f"tarball holds more than one {path.name}")
            files[path.name] = member
            folders.add(path.parent)
    missing = [
        need if isinstance(need, str) else " or ".join(need)
        for need in required
        if not any(n in files for n in ((need,) if isinstance(need, str) else need))
    ]
    if missing:
        raise DownloadError(f"tarball lacks {', '.join(missing)}; is this a PaddleClas inference model?")
    if len(folders) > 1:
        raise DownloadError(f"tarball spreads the model over several folders: {sorted(map(str, folders))}")
    return files


def fetch_model(
    name: str, url: str | None = None, home: str | Path | None = None, sha256: str | None = None
) -> tuple[Path, str]:
    """Fetch model ``name`` (or ``url``), check it, unpack it into ``<home>/<name>``; return that folder and
    the tarball's sha256.

    ``home`` defaults to :func:`weights_home`. ``sha256`` defaults to the catalogue's
    pin. An existing folder is replaced only after the new files are fully unpacked
    and checked.
    """
    model = MODELS.get(name)
    if model is not None and model.make != "download":
        raise DownloadError(f"{name!r} cannot be downloaded ready to use: {model.how_to()}")
    if url is None:
        if model is None:
            known = [m.name for m in MODELS.values() if m.make == "download"]
            raise DownloadError(f"unknown model {name!r}: known {', '.join(known)}; pass url= for others")
        (source,) = model.sources
        url, sha256 = source.url, sha256 or source.sha256
    required = model.files if model is not None else INFERENCE_FILES
    target = Path(home).expanduser() / name if home else weights_home() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as tmp:
        tarball = Path(tmp) / "model.tar"
        log.info("downloading %s", url)
        actual = _fetch(url, tarball)
        if sha256 and actual.lower() != sha256.lower():
            raise DownloadError(
                f"sha256 mismatch for {url}: expected {sha256}, got {actual}; nothing was kept"
            )
        try:
            with tarfile.open(tarball) as archive:
                members = _model_members(archive, required)
                staging = Path(tmp) / name
                staging.mkdir()
                for base, member in members.items():
                    source_file = archive.extractfile(member)
                    if source_file is None:
                        raise DownloadError(f"cannot read {member.name} from the tarball")
                    with source_file, (staging / base).open("wb") as out:
                        shutil.copyfileobj(source_file, out)
        except tarfile.TarError as exc:
            raise DownloadError(f"{url} is not a valid tar file: {exc}") from exc
        if target.exists():
            old = Path(tmp) / "previous"
            target.rename(old)
        staging.rename(target)
    log.info("unpacked %s (sha256 %s) into %s", url, actual, target)
    return target, actual


def download(
    name: str, url: str | None = None, home: str | Path | None = None, sha256: str | None = None
) -> Path:
    """:func:`fetch_model`'s folder."""
    return fetch_model(name, url=url, home=home, sha256=sha256)[0]
