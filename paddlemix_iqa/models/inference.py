"""A small, generic Paddle Inference runner for CPU: one exported program, one batch in, outputs out.

Paddle Inference with oneDNN fuses conv + batch-norm + activation and runs several
times faster than the dynamic graph on CPU, so neural scorers use it as their fast
deployment path. A predictor is not safe to share between threads: ``run`` holds a
lock (the math library already uses every core it is given).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: file names of an exported program, newest format first (Paddle 3 PIR json, Paddle 2 protobuf)
PROGRAM_FILES = ("inference.json", "inference.pdmodel")
PARAMS_FILE = "inference.pdiparams"


def find_program(model_dir: str | os.PathLike) -> tuple[Path, Path] | None:
    """(program file, params file) of an exported model directory, or None when it holds none."""
    model_dir = Path(model_dir)
    params = model_dir / PARAMS_FILE
    for name in PROGRAM_FILES:
        if (model_dir / name).is_file() and params.is_file():
            return model_dir / name, params
    return None


def default_threads() -> int:
    """All cores this process may use (Paddle Inference itself defaults to one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class InferenceRunner:
    """A CPU Paddle Inference predictor over ``model_dir`` (``inference.json|pdmodel`` + ``.pdiparams``)."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        threads: int | None = None,
        mkldnn: bool = True,
        shape_cache: int = 16,
    ):
        from paddle import inference

        found = find_program(model_dir)
        if found is None:
            raise FileNotFoundError(
                f"no exported Paddle program in {model_dir} (expected {' or '.join(PROGRAM_FILES)} + {PARAMS_FILE})"
            )
        program, params = found
        config = inference.Config(str(program), str(params))
        config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(threads or default_threads())
        self.mkldnn = bool(mkldnn)
        if mkldnn:
            try:
                config.enable_mkldnn()
                # oneDNN keeps compiled kernels per input shape; bound it for variable-size inputs
                config.set_mkldnn_cache_capacity(shape_cache)
            except Exception as exc:  # noqa: BLE001 - builds without oneDNN still run, only slower
                log.warning("oneDNN not available in this Paddle build (%s); running without it", exc)
                self.mkldnn = False
        self.model_dir = Path(model_dir)
        self._predictor = inference.create_predictor(config)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._outputs = [self._predictor.get_output_handle(n) for n in self._predictor.get_output_names()]
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output of the program for one input batch (float32, NCHW or whatever it was exported with)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            self._input.reshape(list(batch.shape))
            self._input.copy_from_cpu(batch)
            self._predictor.run()
            return self._outputs[0].copy_to_cpu()
