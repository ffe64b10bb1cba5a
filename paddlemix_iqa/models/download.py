"""``paddlemix-iqa weights download NAME``: fetch an official model tarball, check it, unpack it into the cache.

This is the only place the package touches the network, and only when a user
runs it. The tarball must be a valid tar holding the inference files, with no
member that escapes the target folder (absolute paths, ``..``, links, devices);
its sha256 is checked when known. The model files land flat in
``weights_home()/<name>/`` (or ``--home DIR/<name>/``), where the scorers look.

    python -m paddlemix_iqa.models.download pulc_clarity [--url URL] [--home DIR] [--sha256 HEX]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from .weights import weights_home

log = logging.getLogger(__name__)

_PULC = "https://paddleclas.bj.bcebos.com/models/PULC/inference/"
#: name -> (official URL, sha256 or None when not pinned)
MODELS: dict[str, tuple[str, str | None]] = {
    "pulc_clarity": (_PULC + "clarity_assessment_infer.tar", None),
    "pulc_code": (_PULC + "code_exists_infer.tar", None),
}
#: every PULC inference folder holds the parameters and a graph in one of two formats
REQUIRED = ("inference.pdiparams",)
GRAPHS = ("inference.pdmodel", "inference.json")
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


def _model_members(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
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
    missing = [n for n in REQUIRED if n not in files]
    if not any(g in files for g in GRAPHS):
        missing.append(" or ".join(GRAPHS))
    if missing:
        raise DownloadError(f"tarball lacks {', '.join(missing)}; is this a PaddleClas inference model?")
    if len(folders) > 1:
        raise DownloadError(f"tarball spreads the model over several folders: {sorted(map(str, folders))}")
    return files


def download(
    name: str, url: str | None = None, home: str | Path | None = None, sha256: str | None = None
) -> Path:
    """Fetch model ``name`` (or ``url``), check it and unpack it into ``<home>/<name>``; return that folder.

    ``home`` defaults to :func:`weights_home`. An existing folder is replaced only
    after the new files are fully unpacked and checked.
    """
    if url is None:
        if name not in MODELS:
            raise DownloadError(f"unknown model {name!r}: known {', '.join(MODELS)}; pass url= for others")
        url, known = MODELS[name]
        sha256 = sha256 or known
    target = Path(home).expanduser() / name if home else weights_home() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as tmp:
        tarball = Path(tmp) / "model.tar"
        log.info("downloading %s", url)
        actual = _fetch(url, tarball)
        if sha256 and actual.lower() != sha256.lower():
            raise DownloadError(f"sha256 mismatch for {url}: expected {sha256}, got {actual}")
        try:
            with tarfile.open(tarball) as archive:
                members = _model_members(archive)
                staging = Path(tmp) / name
                staging.mkdir()
                for base, member in members.items():
                    source = archive.extractfile(member)
                    if source is None:
                        raise DownloadError(f"cannot read {member.name} from the tarball")
                    with source, (staging / base).open("wb") as out:
                        shutil.copyfileobj(source, out)
        except tarfile.TarError as exc:
            raise DownloadError(f"{url} is not a valid tar file: {exc}") from exc
        if target.exists():
            old = Path(tmp) / "previous"
            target.rename(old)
        staging.rename(target)
    log.info("unpacked %s (sha256 %s) into %s", url, actual, target)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``weights download`` arguments, for the ``paddlemix-iqa`` command to reuse."""
    parser.add_argument("name", help=f"model to fetch: {', '.join(MODELS)} (any name with --url)")
    parser.add_argument("--url", help="download from this URL instead of the official one")
    parser.add_argument(
        "--home", help="weights folder (default: $PADDLEMIX_IQA_HOME or ~/.cache/paddlemix_iqa)"
    )
    parser.add_argument("--sha256", help="expected sha256 of the tarball")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m paddlemix_iqa.models.download NAME ...``: the same as ``paddlemix-iqa weights download``."""
    from ..cli import main as cli_main

    return cli_main(["weights", "download", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
