"""Convert the official BRISQUE release (libsvm ``allmodel`` + svm-scale ``allrange``) to package data.

    python tools/convert_brisque_model.py ../shared/data/brisque paddlemix_iqa/data/brisque_live.npz

The output ``.npz`` holds what a vectorised RBF prediction needs (support vectors,
coefficients, rho, gamma) and the per-feature scaling ranges, so no libsvm is
needed at run time. The reference's NOTICE is copied next to it: it must ship
with every copy of the model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

N_FEATURES = 36


def read_libsvm_model(path: Path) -> dict:
    """Header fields and the SV section of a libsvm text model (epsilon-SVR, RBF kernel)."""
    header: dict[str, str] = {}
    coefs: list[float] = []
    rows: list[np.ndarray] = []
    lines = path.read_text().splitlines()
    it = iter(lines)
    for line in it:
        if line.strip() == "SV":
            break
        key, _, value = line.strip().partition(" ")
        header[key] = value
    for line in it:
        fields = line.split()
        if not fields:
            continue
        coefs.append(float(fields[0]))
        row = np.zeros(N_FEATURES)
        for pair in fields[1:]:
            index, _, value = pair.partition(":")
            row[int(index) - 1] = float(value)
        rows.append(row)
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon_svr with an rbf kernel, got {header}")
    if int(header["total_sv"]) != len(rows):
        raise ValueError(f"{path}: header says {header['total_sv']} support vectors, found {len(rows)}")
    return {
        "support_vectors": np.stack(rows),
        "coefs": np.asarray(coefs),
        "rho": float(header["rho"]),
        "gamma": float(header["gamma"]),
    }


def read_svm_scale_range(path: Path) -> dict:
    """An svm-scale range file: ``x``, then ``lower upper``, then ``index min max`` per feature."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if lines[0] != ["x"]:
        raise ValueError(f"{path}: not an svm-scale feature range file (first line {lines[0]})")
    lower, upper = (float(v) for v in lines[1])
    low = np.full(N_FEATURES, np.nan)
    high = np.full(N_FEATURES, np.nan)
    for index, fmin, fmax in lines[2:]:
        low[int(index) - 1], high[int(index) - 1] = float(fmin), float(fmax)
    if np.isnan(low).any():
        raise ValueError(f"{path}: ranges for {int(np.isnan(low).sum())} features are missing")
    return {"range_lower": lower, "range_upper": upper, "feature_min": low, "feature_max": high}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("release", type=Path, help="folder with allmodel, allrange and NOTICE.txt")
    parser.add_argument("output", type=Path, help="the .npz to write, e.g. paddlemix_iqa/data/brisque_live.npz")
    args = parser.parse_args(argv)

    model = read_libsvm_model(args.release / "allmodel")
    scale = read_svm_scale_range(args.release / "allrange")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        **model,
        **scale,
        quantize=True,  # the release passes features through text files: %f, then svm-scale's %g
        description="official BRISQUE model trained on LIVE (BRISQUE release, (c) 2011 UT Austin)",
    )
    notice = args.release / "NOTICE.txt"
    if notice.is_file():
        shutil.copyfile(notice, args.output.parent / "BRISQUE_NOTICE.txt")
    print(
        f"wrote {args.output} ({args.output.stat().st_size} bytes): "
        f"{len(model['coefs'])} support vectors, gamma {model['gamma']}, rho {model['rho']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
