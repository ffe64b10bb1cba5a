"""``weights download``: served from a local HTTP server on 127.0.0.1, checked, unpacked where scorers look."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from paddlemix_iqa.cli import main as cli_main
from paddlemix_iqa.models.download import DownloadError, download

paddle = pytest.importorskip("paddle")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(folder served, base URL) of an HTTP server bound to 127.0.0.1 only."""
    root = tmp_path_factory.mktemp("served")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> Path:
    """A real (tiny, random) PP-LCNet exported in the inference layout."""
    from paddlemix_iqa.models.pplcnet import PPLCNet, export_inference

    paddle.seed(1)
    return export_inference(PPLCNet(scale=0.25, head=64), tmp_path_factory.mktemp("model"))


def _tar(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _official_layout(model_files: Path) -> dict[str, bytes]:
    """As PaddleClas ships it: one top folder holding the inference files."""
    entries = {f"clarity_assessment_infer/{f.name}": f.read_bytes() for f in model_files.iterdir()}
    entries["clarity_assessment_infer/inference.pdiparams.info"] = b"info"
    return entries


def test_download_unpacks_into_home_and_scores(server, model_files, tmp_path, monkeypatch, photo):
    root, base = server
    tarball = _tar(root / "clarity_assessment_infer.tar", _official_layout(model_files))
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    home = tmp_path / "home"
    folder = download("pulc_clarity", url=f"{base}/{tarball.name}", home=home, sha256=digest)
    assert folder == home / "pulc_clarity"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f.name for f in model_files.iterdir()] + ["inference.pdiparams.info"]
    )
    assert not [p for p in home.iterdir() if p.name != "pulc_clarity"], "no temporary files left behind"

    from paddlemix_iqa.scorers.pulc import PulcClarityScorer

    monkeypatch.setenv("PADDLEMIX_IQA_HOME", str(home))
    p = PulcClarityScorer().score_batch([photo, photo[::2, ::2]])
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


def test_default_home_is_the_weights_cache(server, model_files, tmp_path, monkeypatch):
    root, base = server
    _tar(root / "code.tar", _official_layout(model_files))
    monkeypatch.setenv("PADDLEMIX_IQA_HOME", str(tmp_path / "cache"))
    assert download("pulc_code", url=f"{base}/code.tar") == tmp_path / "cache" / "pulc_code"


@pytest.mark.parametrize(
    "entries, links, message",
    [
        ({"../evil/inference.pdiparams": b"x", "m/inference.json": b"{}"}, None, "unsafe path"),
        ({"/abs/inference.pdiparams": b"x", "m/inference.json": b"{}"}, None, "unsafe path"),
        ({"m/inference.pdiparams": b"x"}, {"m/inference.json": "/etc/passwd"}, "link"),
        ({"m/inference.pdiparams": b"x"}, None, "inference.pdmodel or inference.json"),
        ({"m/inference.json": b"{}"}, None, "inference.pdiparams"),
        ({"a/inference.json": b"{}", "b/inference.pdiparams": b"x"}, None, "several folders"),
    ],
)
def test_bad_tarballs_are_refused_and_keep_old_weights(server, tmp_path, entries, links, message):
    root, base = server
    name = f"bad{abs(hash(message + str(sorted(entries))))}.tar"
    _tar(root / name, entries, links)
    old = tmp_path / "pulc_code"
    old.mkdir()
    (old / "inference.pdiparams").write_bytes(b"old")
    with pytest.raises(DownloadError, match=message):
        download("pulc_code", url=f"{base}/{name}", home=tmp_path)
    assert (old / "inference.pdiparams").read_bytes() == b"old"
    assert not (tmp_path.parent / "evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulc_code"]


def test_not_a_tar_missing_url_and_checksum(server, model_files, tmp_path):
    root, base = server
    (root / "page.tar").write_text("<html>not found</html>")
    with pytest.raises(DownloadError, match="not a valid tar"):
        download("pulc_code", url=f"{base}/page.tar", home=tmp_path)
    with pytest.raises(DownloadError, match="could not download"):
        download("pulc_code", url=f"{base}/absent.tar", home=tmp_path)
    _tar(root / "ok.tar", _official_layout(model_files))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download("pulc_code", url=f"{base}/ok.tar", home=tmp_path, sha256="0" * 64)
    with pytest.raises(DownloadError, match="unknown model"):
        download("nope", home=tmp_path)
    assert not (tmp_path / "pulc_code").exists()


def test_command_line(server, model_files, tmp_path, capsys):
    root, base = server
    _tar(root / "cli.tar", _official_layout(model_files))
    command = ["weights", "download", "pulc_clarity", "--home", str(tmp_path), "--url"]
    assert cli_main([*command, f"{base}/cli.tar"]) == 0  # paddlemix-iqa weights download ...
    assert capsys.readouterr().out.strip() == str(tmp_path / "pulc_clarity")
    assert cli_main([*command, f"{base}/absent.tar"]) == 1
    assert "could not download" in capsys.readouterr().err
    # the module runs as a script too
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "paddlemix_iqa.models.download",
            "pulc_code",
            "--url",
            f"{base}/cli.tar",
            "--home",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pulc_code" / "inference.pdiparams").is_file()
