"""Client of the scoring service (``paddlemix-iqa serve``), for batch jobs and ``paddlemix-iqa score --server``.

```python
from paddlemix_iqa.client import ScoringClient

with ScoringClient("http://127.0.0.1:8000") as client:   # token: token= or $PADDLEMIX_IQA_TOKEN
    client.wait_ready()
    for path, result in zip(paths, client.score_files(paths, concurrency=4)):
        print(path, result["verdict"], result["reason"], result["scores"])
```

A batch job should not stop at one bad file: a local file that cannot be read, or an
image the server refuses (over its pixel or size limit), comes back as a ``rejected``
result whose reason starts with ``client:`` or ``refused:``; a chunk refused for its
total size is split and sent again. Other refusals (401, 400, a server that is down)
raise :class:`ServiceError`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TOKEN_ENV = "PADDLEMIX_IQA_TOKEN"
BATCH = "/v1/score:batch"


class ServiceError(RuntimeError):
    """The service refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None, body: Any = None):
        super().__init__(message)
        self.status, self.code, self.body = status, code, body


def _refused(code: str, detail: str) -> dict[str, Any]:
    return {"verdict": "rejected", "reason": f"{code}: {detail}", "scores": {}}


class ScoringClient:
    """Talks to one running service over HTTP (httpx; keep-alive, thread-safe)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 600.0):
        import httpx

        token = token or os.environ.get(TOKEN_ENV) or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        # trust_env=False: a proxy from the environment must not see (or reroute) local traffic
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ScoringClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- service state ------------------------------------------------------------------
    def _get(self, path: str):
        import httpx

        try:
            return self.http.get(path)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach {self.url}{path}: {exc}") from None

    def ready(self) -> dict[str, Any]:
        """The server's /readyz answer (``ready`` is False while its models load)."""
        return self._get("/readyz").json()

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.2) -> dict[str, Any]:
        """Wait until the models are loaded; raises ServiceError after ``timeout`` seconds, or at once
        when nothing listens (a server listens before it loads its models, so it is not starting)."""
        deadline = time.monotonic() + timeout
        while True:
            last = self.ready()
            if last.get("ready"):
                return last
            if last.get("state") == "failed":
                raise ServiceError(f"the service failed to load: {last.get('error')}", body=last)
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.url} not ready after {timeout:g} s ({last})")
            time.sleep(interval)

    # --- scoring ------------------------------------------------------------------------
    def post(self, endpoint: str, **request: Any) -> list[dict[str, Any]]:
        """One request (``json=`` or ``files=``) to ``endpoint``; its results, or ServiceError."""
        import httpx

        try:
            response = self.http.post(endpoint, **request)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach {self.url}{endpoint}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict) or "results" not in body:
            code = body.get("error") if isinstance(body, dict) else None
            detail = body.get("detail") if isinstance(body, dict) else response.text[:200]
            raise ServiceError(
                f"{endpoint}: HTTP {response.status_code} {code or ''}: {detail}".replace("  ", " "),
                response.status_code,
                code,
                body,
            )
        return body["results"]

    def score_bytes(self, images: Sequence[bytes], endpoint: str = BATCH) -> list[dict[str, Any]]:
        """Results for encoded images (uploaded as multipart ``file`` fields), in order."""
        return self._chunk([("upload", data) for data in images], endpoint)

    def score_files(
        self,
        paths: Sequence[str | os.PathLike],
        batch_size: int = 16,
        concurrency: int = 2,
        endpoint: str = BATCH,
    ) -> list[dict[str, Any]]:
        """Upload local files in chunks of ``batch_size`` (``concurrency`` requests in flight); one
        result per path, in order. An unreadable local file is a ``client:`` rejection, not an error."""

        def load(path: str | os.PathLike) -> tuple[str, Any]:
            try:
                return ("upload", Path(path).read_bytes())
            except OSError as exc:
                return ("local_error", f"cannot read {os.fspath(path)}: {exc.strerror or exc}")

        def chunk(part: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
            return self._chunk([load(p) for p in part], endpoint)

        return self._chunks(list(paths), batch_size, concurrency, chunk)

    def score_paths(
        self, paths: Sequence[str], batch_size: int = 64, concurrency: int = 2, endpoint: str = BATCH
    ) -> list[dict[str, Any]]:
        """Score files the server reads itself (paths relative to, and confined to, its root)."""

        def chunk(part: Sequence[str]) -> list[dict[str, Any]]:
            return self._chunk([("path", os.fspath(p)) for p in part], endpoint)

        return self._chunks(list(paths), batch_size, concurrency, chunk)

    def _chunks(self, items: list, batch_size: int, concurrency: int, run) -> list[dict[str, Any]]:
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be >= 1")
        parts = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        if concurrency == 1 or len(parts) < 2:
            return [r for part in parts for r in run(part)]
        with ThreadPoolExecutor(concurrency) as pool:
            return [r for results in pool.map(run, parts) for r in results]

    def _chunk(self, entries: list[tuple[str, Any]], endpoint: str) -> list[dict[str, Any]]:
        """Send what can be sent; refusals of one image become its result, a too-large chunk is split."""
        out: list[dict[str, Any] | None] = [
            _refused("client", value) if kind == "local_error" else None for kind, value in entries
        ]
        todo = [i for i, r in enumerate(out) if r is None]
        while todo:
            sent = [entries[i] for i in todo]
            try:
                if sent[0][0] == "path":
                    results = self.post(endpoint, json={"images": [{"path": v} for _, v in sent]})
                else:
                    results = self.post(
                        endpoint, files=[("file", (f"{i}", v)) for i, (_, v) in enumerate(sent)]
                    )
            except ServiceError as exc:
                index = exc.body.get("index") if isinstance(exc.body, dict) else None
                if exc.status in (400, 403, 413) and isinstance(index, int) and 0 <= index < len(todo):
                    out[todo[index]] = _refused("refused", f"{exc.code}: {exc.body.get('detail')}")
                    todo = [i for i in todo if out[i] is None]
                    continue
                if exc.status == 413 and exc.code in ("too_large", "too_many_images") and len(todo) > 1:
                    half = len(todo) // 2
                    for part in (todo[:half], todo[half:]):
                        for i, r in zip(part, self._chunk([entries[i] for i in part], endpoint), strict=True):
                            out[i] = r
                    return out  # type: ignore[return-value]
                if exc.status == 413 and len(todo) == 1:
                    out[todo[0]] = _refused("refused", f"{exc.code}: {exc.body.get('detail')}")
                    break
                raise
            for i, r in zip(todo, results, strict=True):
                out[i] = r
            break
        return out  # type: ignore[return-value]


def result_rows(
    paths: Sequence[str], results: Sequence[dict[str, Any]], metrics: Sequence[str] | None, normalized: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and columns for ``paddlemix-iqa score --server``: path, verdict, one column per metric
    (native, or its quality with ``normalized``), reason."""
    if metrics is None:
        seen = {
            k for r in results for k in r.get("scores", {}) if k != "error" and not k.endswith("_quality")
        }
        metrics = sorted(seen)
    rows = []
    for path, r in zip(paths, results, strict=True):
        scores = r.get("scores", {})
        row: dict[str, Any] = {"path": path, "verdict": r.get("verdict")}
        for m in metrics:
            row[m] = scores.get(f"{m}_quality", scores.get(m)) if normalized else scores.get(m)
        row["reason"] = r.get("reason") or ""
        rows.append(row)
    return rows, ["path", "verdict", *metrics, "reason"]


def encode_base64(data: bytes) -> str:
    """An image's bytes for a JSON request's ``{"base64": ...}`` entry."""
    return base64.b64encode(data).decode("ascii")
