"""DataCopilot integration against a stand-in that follows the contract page."""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys

import cv2
import pytest
from PIL import Image

from paddlemix_iqa import iqa_brisque, iqa_filter, iqa_tagger


@pytest.fixture()
def dataset_dir(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "sharp.jpg", quality=92)
    Image.fromarray(cv2.GaussianBlur(photo, (0, 0), 4)).save(tmp_path / "blur.jpg", quality=92)
    Image.fromarray(photo[300:400]).save(tmp_path / "wide.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return tmp_path


def records(folder):
    names = ["sharp.jpg", "blur.jpg", "wide.jpg", "broken.jpg", "sharp.jpg"]
    return [
        {
            "id": str(i),
            "image": str(folder / n),
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is this?"},
                {"from": "gpt", "value": "A photo."},
            ],
        }
        for i, n in enumerate(names)
    ]


def test_importing_the_package_does_not_import_paddlemix_or_paddle():
    code = (
        "import sys, paddlemix_iqa, paddlemix_iqa.ops; "
        "print(any(m.split('.')[0] in ('paddlemix', 'paddle', 'torch') for m in sys.modules))"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_integration_without_host_registers_nothing_and_explains():
    import paddlemix_iqa.integrations.datacopilot as dc

    if importlib.util.find_spec("paddlemix") is not None:
        pytest.skip("a real paddlemix is installed")
    with pytest.raises(ImportError, match="PaddleMIX"):
        dc.register()


def test_item_ops_in_host_map_and_filter_chain(host, dataset_dir):
    ds = host.MMDataset(records(dataset_dir))
    op = iqa_filter("laplacian", min_score=0.5)
    kept = ds.map(op, max_workers=4).nonempty()
    assert [it["id"] for it in kept.items] == ["0", "2", "4"]  # blurred and broken dropped
    assert ds.items[3]["__iqa_error"].startswith("decode_error: ")  # host map does not copy items
    filtered = ds.filter(op, max_workers=2)
    assert [it["id"] for it in filtered.items] == ["0", "2", "4"]
    # chained with the host's own filter, on the survivors of ours
    chained = kept.filter(iqa_tagger("tenengrad")).image_ration_filter(min_ratio=0.333, max_ratio=3.0)
    assert [it["id"] for it in chained.items] == ["0", "4"]
    assert all("__tag_tenengrad" in it for it in chained.items)


def test_item_ops_in_process_mode(host, dataset_dir):
    ds = host.MMDataset(records(dataset_dir))
    kept = ds.filter(
        iqa_filter("gradient_mean", min_score=0.5), max_workers=2, mode=host.ParallelMode.PROCESS
    )
    assert [it["id"] for it in kept.items] == ["0", "2", "4"]


def test_host_signature_functions_keep_items_without_image(host):
    pytest.importorskip("paddlemix_iqa.scorers.brisque")
    ds = host.MMDataset([{"id": "no-image", "conversations": []}])
    assert len(ds.filter(functools.partial(iqa_brisque, min_score=0.6)).items) == 1


def test_register_adds_batched_dataset_ops_idempotently(host, dataset_dir):
    from paddlemix_iqa.integrations import datacopilot as dc

    importlib.reload(dc)  # importing registers when the host is importable
    assert hasattr(host.MMDataset, "iqa_tag") and hasattr(host.MMDataset, "iqa_filter")
    assert dc.register() == []  # already there: nothing added, no assertion from the host
    ds = host.MMDataset(records(dataset_dir))
    tagged = ds.iqa_tag(["laplacian", "gradient_mean"], progress=False)
    assert isinstance(tagged, host.MMDataset) and len(tagged.items) == 5
    assert tagged.items[0]["__tag_laplacian"] > 0.5 > tagged.items[1]["__tag_laplacian"]
    assert tagged.items[3]["__tag_gradient_mean"] is None
    kept = ds.iqa_filter("laplacian", min_score=0.5, batch_size=2, progress=False)
    assert [it["id"] for it in kept.items] == ["0", "2", "4"]
    # item-level functions are not methods
    assert not hasattr(host.MMDataset, "iqa_brisque")


def test_register_never_overrides_a_host_method(host):
    from paddlemix_iqa.integrations import datacopilot as dc

    def iqa_filter(dataset):  # the host (or another plugin) got there first
        return "theirs"

    host.register(host.MMDataset)(iqa_filter)
    assert dc.register() == ["iqa_tag", "iqa_dedup"]
    assert host.MMDataset([]).iqa_filter() == "theirs"
