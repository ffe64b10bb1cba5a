"""``weights download``: served from a local HTTP server on 127.0.0.1, checked, unpacked where scorers look."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddlemix_iqa.cli import main as cli_main
from paddlemix_iqa.models import catalog
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
        ({"m/inference.pdiparams": b"x"}, None, "inference.json or inference.pdmodel"),
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


def _pin(monkeypatch, name: str, url: str, sha256: str) -> None:
    """Point the catalogue's entry at the local server, with a pinned sha256."""
    model = catalog.MODELS[name]
    source = dataclasses.replace(model.sources[0], url=url, sha256=sha256)
    monkeypatch.setitem(catalog.MODELS, name, dataclasses.replace(model, sources=(source,)))


def test_a_pinned_sha256_is_verified_and_a_mismatch_keeps_nothing(server, model_files, tmp_path, monkeypatch):
    root, base = server
    tarball = _tar(root / "pinned.tar", _official_layout(model_files))
    _pin(monkeypatch, "pulc_code", f"{base}/pinned.tar", "ab" * 32)
    with pytest.raises(DownloadError, match="sha256 mismatch .* nothing was kept"):
        download("pulc_code", home=tmp_path)  # no url: the catalogue's source and pin
    assert list(tmp_path.iterdir()) == []
    _pin(monkeypatch, "pulc_code", f"{base}/pinned.tar", hashlib.sha256(tarball.read_bytes()).hexdigest())
    assert download("pulc_code", home=tmp_path) == tmp_path / "pulc_code"


def test_command_line(server, model_files, tmp_path, capsys, photo):
    root, base = server
    _tar(root / "cli.tar", _official_layout(model_files))
    digest = hashlib.sha256((root / "cli.tar").read_bytes()).hexdigest()
    command = ["weights", "download", "pulc_clarity", "--weights-dir", str(tmp_path), "--url"]
    assert cli_main([*command, f"{base}/cli.tar"]) == 0  # paddlemix-iqa weights download ...
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "pulc_clarity")  # stdout: the folder only, for scripts
    assert f"sha256 {digest} (not pinned" in err  # the hash of what came, to pin it in the catalogue
    assert cli_main([*command, f"{base}/absent.tar"]) == 1
    assert "could not download" in capsys.readouterr().err
    # --home is the old spelling of --weights-dir
    assert (
        cli_main(["weights", "download", "pulc_code", "--home", str(tmp_path), "--url", f"{base}/cli.tar"])
        == 0
    )
    assert (tmp_path / "pulc_code" / "inference.pdiparams").is_file()
    capsys.readouterr()

    # the downloaded models are found through --weights-dir by the commands that load them
    assert cli_main(["weights", "list", "--weights-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert f"pulc_clarity: present in {tmp_path / 'pulc_clarity'}" in listing
    assert f"arniqa: missing in {tmp_path / 'arniqa'}" in listing
    Image.fromarray(photo).save(tmp_path / "a.png")
    score = ["score", str(tmp_path / "a.png"), "--metrics", "pulc_clarity", "--format", "csv"]
    assert os.environ.get("PADDLEMIX_IQA_HOME") != str(tmp_path)
    assert cli_main([*score, "--weights-dir", str(tmp_path)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split(",")
    assert 0 <= float(row[1]) <= 1 and row[2] == ""
    assert os.environ.get("PADDLEMIX_IQA_HOME") != str(tmp_path), "the option does not leak past the command"


def test_download_arniqa_explains_the_manual_steps_without_the_network(tmp_path, capsys):
    assert cli_main(["weights", "download", "arniqa", "--weights-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for needed in (
        "https://github.com/miccunifi/ARNIQA/releases/download/weights/ARNIQA.pth",
        "https://github.com/miccunifi/ARNIQA/releases/download/weights/regressor_kadid10k.pth",
        "CC BY-NC 4.0",
        "python tools/convert_arniqa.py --encoder ./arniqa_torch/ARNIQA.pth "
        f"--regressor ./arniqa_torch/regressor_kadid10k.pth --out {tmp_path / 'arniqa'}",
    ):
        assert needed in out
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="convert_arniqa"):  # the library call says the same
        download("arniqa", home=tmp_path)
