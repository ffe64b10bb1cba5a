"""``paddlemix-iqa serve CONFIG``: score and judge images over HTTP with a pipeline config's ops.

Starlette on uvicorn (FastAPI's own base; FastAPI adds request models and OpenAPI pages this
service does not need, because one endpoint takes either multipart or JSON).

Endpoints (JSON errors everywhere: ``{"error": CODE, "detail": TEXT, ...}``):

- ``POST /v1/score``: images as multipart fields named ``file``, or JSON
  ``{"images": [{"path": ...} | {"base64": ...}]}`` (paths relative to, and confined to,
  the allowed root); answers ``{"results": [{"verdict", "reason", "scores"}]}``, one per
  image, in order. A corrupt image is a 200 with verdict ``rejected`` and its reason.
- ``POST /v1/score:batch``: the same, with the batch limits (more images, longer timeout).
- ``GET /healthz`` (the process answers), ``GET /readyz`` (models loaded), ``GET /metrics``
  (Prometheus).

Refused with a 4xx: a body over ``--max-upload-bytes`` (413 ``too_large``), more images
than allowed (413 ``too_many_images``), an image over ``--max-pixels`` (413
``too_many_pixels``, from its header), a path outside the root (403 ``outside_root``),
a malformed request (400), a wrong or missing token (401). A request that takes longer
than its timeout is a 504; while the models load, 503.

Starlette and uvicorn are imported by :func:`run` and :func:`create_app`, never when the
CLI builds its parser.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import ImageLoadError, ImageTooLarge, OutsideImageRoot, max_pixels_limit, probe_image, resolve_path

log = logging.getLogger(__name__)

TOKEN_ENV = "PADDLEMIX_IQA_TOKEN"
ENDPOINTS = ("/v1/score", "/v1/score:batch", "/healthz", "/readyz", "/metrics")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Limits:
    """What one request may ask for; each is refused with a 4xx and a JSON error when exceeded."""

    max_upload_bytes: int = 64 * 2**20  # request body, multipart or JSON
    max_pixels: int = 0  # per image, from its header; 0: the loader's limit (PADDLEMIX_IQA_MAX_PIXELS)
    max_images: int = 32  # per /v1/score request
    max_batch_images: int = 512  # per /v1/score:batch request
    timeout: float = 60.0  # seconds, /v1/score
    batch_timeout: float = 600.0  # seconds, /v1/score:batch

    def __post_init__(self) -> None:
        self.max_pixels = self.max_pixels or max_pixels_limit()


class ApiError(Exception):
    """A refused request: HTTP status, a short machine-readable code, a sentence for people."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "too_large", f"request body larger than {limit} bytes (--max-upload-bytes)")


# --- the app -------------------------------------------------------------------------------
class Metrics:
    """The Prometheus series, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = reg = CollectorRegistry()
        self.requests = Counter("iqa_requests", "HTTP requests", ["endpoint", "status"], registry=reg)
        self.latency = Histogram(
            "iqa_request_duration_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600),
            registry=reg,
        )
        self.in_progress = Gauge("iqa_requests_in_progress", "Requests being served", registry=reg)
        self.images = Counter("iqa_images", "Images judged", ["verdict"], registry=reg)
        self.rejections = Counter(
            "iqa_rejections", "Rejected images by reason (step, and error kind)", ["reason"], registry=reg
        )
        self.refused = Counter(
            "iqa_refused_requests", "Requests refused with a 4xx/5xx", ["error"], registry=reg
        )
        self.batch = Histogram(
            "iqa_neural_batch_images",
            "Images per batch of the neural ops (dynamic batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=reg,
        )
        self.ready = Gauge("iqa_ready", "1 when the models are loaded", registry=reg)


def reason_label(reason: str) -> str:
    """A bounded label for a rejection reason: the step's name, plus the error kind of a decode error
    (``"decodable: truncated"``); thresholds and values stay out of the label."""
    step, _, why = reason.partition(": ")
    for prefix in ("decode_error: ", "score_error: "):
        if why.startswith(prefix):
            return f"{step}: {why[len(prefix) :].partition(':')[0]}"
    return step


def create_app(engine: Any, limits: Limits | None = None, token: str | None = None, spool: str | None = None):
    """The ASGI app around an :class:`~paddlemix_iqa.service.engine.Engine` (loaded in the background)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ..pipeline.outputs import dumps

    limits = limits or Limits()
    metrics = Metrics()
    engine.observe_batch = metrics.batch.observe

    def respond(status: int, body: Any, headers: dict | None = None) -> Response:
        return Response(dumps(body), status, headers=headers, media_type="application/json")

    @asynccontextmanager
    async def lifespan(app):
        engine.start_batcher()
        loading = asyncio.create_task(asyncio.to_thread(engine.start))
        loading.add_done_callback(lambda _: metrics.ready.set(1 if engine.ready else 0))
        try:
            yield
        finally:
            await asyncio.to_thread(engine.close)

    async def api_error(request: Request, exc: ApiError) -> Response:
        metrics.refused.labels(exc.code).inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return respond(exc.status, {"error": exc.code, "detail": exc.detail, **exc.extra}, headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        metrics.refused.labels(code).inc()
        return respond(exc.status_code, {"error": code, "detail": str(exc.detail)})

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        metrics.refused.labels("internal").inc()
        return respond(500, {"error": "internal", "detail": f"{type(exc).__name__}: {exc}"})

    def authorize(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer TOKEN)")

    async def healthz(request: Request) -> Response:
        return respond(200, {"status": "ok"})

    async def readyz(request: Request) -> Response:
        body = {"ready": engine.ready, "state": engine.state}
        if engine.error:
            body["error"] = engine.error
        if engine.ready:
            body.update(engine.describe())
            body["limits"] = vars(limits)
        return respond(200 if engine.ready else 503, body)

    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        authorize(request)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def score(request: Request, batch: bool) -> Response:
        authorize(request)
        if not engine.ready:
            raise ApiError(
                503, "not_ready", f"the models are {engine.state}: {engine.error or 'see /readyz'}"
            )
        most = limits.max_batch_images if batch else limits.max_images
        timeout = limits.batch_timeout if batch else limits.timeout
        folder = tempfile.mkdtemp(prefix="req-", dir=spool)

        async def judge() -> list:
            paths = await read_images(request, Path(folder), most, engine.root)
            await asyncio.to_thread(check_pixels, paths, limits.max_pixels)
            return await engine.score(paths)

        try:
            outcomes = await asyncio.wait_for(judge(), timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"not finished within {timeout:g} s") from None
        except ApiError:
            raise
        except Exception as exc:
            from .engine import EngineUnavailable

            if isinstance(exc, EngineUnavailable):
                raise ApiError(503, "not_ready", str(exc)) from None
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        for o in outcomes:
            metrics.images.labels(o.verdict).inc()
            if o.reason:
                metrics.rejections.labels(reason_label(o.reason)).inc()
        return respond(200, {"results": [o.to_dict() for o in outcomes]})

    async def score_one(request: Request) -> Response:
        return await score(request, batch=False)

    async def score_batch(request: Request) -> Response:
        return await score(request, batch=True)

    app = Starlette(
        routes=[
            Route("/v1/score", score_one, methods=["POST"]),
            Route("/v1/score:batch", score_batch, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.engine, app.state.metrics, app.state.limits = engine, metrics, limits
    return Guard(app, limits.max_upload_bytes, metrics)


class Guard:
    """Outermost ASGI layer: refuses an announced body over the limit before reading it, stops a
    chunked one as soon as it passes the limit, and counts every request and its latency."""

    def __init__(self, app: Any, max_body: int, metrics: Metrics):
        self.app, self.max_body, self.metrics = app, max_body, metrics
        self.state = app.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = {"code": 500}
        start = time.perf_counter()

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                err = BodyTooLarge(self.max_body)
                self.metrics.refused.labels(err.code).inc()
                body = json.dumps({"error": err.code, "detail": err.detail}).encode()
                await sending(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
                    }
                )
                await sending({"type": "http.response.body", "body": body})
                return
            seen = 0

            async def limited():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_body:
                        raise BodyTooLarge(self.max_body)
                return message

            await self.app(scope, limited, sending)
        finally:
            self.metrics.in_progress.dec()
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


# --- reading a request ---------------------------------------------------------------------
async def read_images(request: Any, folder: Path, most: int, root: Path) -> list[str]:
    """The request's images as local paths: uploads and base64 written to ``folder``, paths
    confined to ``root`` (symlinks resolved) and returned resolved; 4xx for a malformed request."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _read_multipart(request, folder, most)
    if kind in ("application/json", ""):
        body = await request.body()
        return await asyncio.to_thread(_read_json, body, folder, most, root)  # parsing 64 MB takes a while
    raise ApiError(
        415,
        "unsupported_media_type",
        f"send multipart/form-data (fields 'file') or application/json, not {kind}",
    )


async def _read_multipart(request: Any, folder: Path, most: int) -> list[str]:
    from starlette.datastructures import UploadFile

    try:
        form = await request.form(max_files=most + 1, max_fields=most + 16)
    except ApiError:
        raise
    except Exception as exc:  # the multipart parser's refusals (too many files, malformed body)
        detail = getattr(exc, "detail", None) or str(exc)
        if "too many files" in str(detail).lower():
            raise ApiError(413, "too_many_images", f"more than {most} images in one request") from None
        raise ApiError(400, "bad_request", f"malformed multipart body: {detail}") from None
    try:
        files = form.getlist("file")
        if not files:
            raise ApiError(400, "no_images", "no images: send multipart fields named 'file'")
        if len(files) > most:
            raise ApiError(413, "too_many_images", f"{len(files)} images; at most {most} per request")
        paths = []
        for i, f in enumerate(files):
            if not isinstance(f, UploadFile):
                raise ApiError(400, "bad_request", f"field 'file' #{i} is text, not a file upload", index=i)
            path = folder / f"{i:05d}"
            await f.seek(0)
            await asyncio.to_thread(_save, f.file, path)
            paths.append(str(path))
        return paths
    finally:
        await form.close()


def _save(source: Any, path: Path) -> None:
    with path.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def _read_json(body: bytes, folder: Path, most: int, root: Path) -> list[str]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_request", f"the body is not JSON: {exc}") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise ApiError(400, "no_images", 'send {"images": [{"path": ...} | {"base64": ...}, ...]}')
    if len(images) > most:
        raise ApiError(413, "too_many_images", f"{len(images)} images; at most {most} per request")
    paths = []
    for i, entry in enumerate(images):
        given = [k for k in ("path", "base64") if isinstance(entry, dict) and k in entry]
        if len(given) != 1 or not isinstance(entry[given[0]], str):
            raise ApiError(
                400, "bad_request", f"images[{i}] must be {{'path': str}} or {{'base64': str}}", index=i
            )
        if given[0] == "base64":
            try:
                raw = base64.b64decode(entry["base64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ApiError(
                    400, "bad_base64", f"images[{i}].base64 is not base64: {exc}", index=i
                ) from None
            path = folder / f"{i:05d}"
            path.write_bytes(raw)
            paths.append(str(path))
        else:
            paths.append(confine(entry["path"], root, i))
    return paths


def confine(ref: str, root: Path, index: int = 0) -> str:
    """``ref`` joined to ``root`` and resolved (symlinks included), or a 4xx when it leaves the root
    (the loader's own rule, :func:`paddlemix_iqa.io.resolve_path`)."""
    try:
        path = resolve_path(ref, root)
    except OutsideImageRoot:
        raise ApiError(
            403, "outside_root", f"images[{index}].path is outside the allowed root", index=index
        ) from None
    except ImageLoadError as exc:  # a remote URL, a NUL byte, an empty reference
        raise ApiError(400, "bad_path", f"images[{index}].path: {exc.reason}", index=index) from None
    return os.path.realpath(path)


def check_pixels(paths: list[str], max_pixels: int) -> None:
    """Refuse the request when an image's header says it has more than ``max_pixels`` pixels
    (before any decoding); unreadable files pass here and get their reason from the chain."""
    for i, path in enumerate(paths):
        try:
            info = probe_image(path)
        except ImageTooLarge as exc:
            raise ApiError(413, "too_many_pixels", f"image {i}: {exc.reason}", index=i) from None
        except ImageLoadError:
            continue
        if info.width * info.height > max_pixels:
            raise ApiError(
                413,
                "too_many_pixels",
                f"image {i} is {info.width}x{info.height} = {info.width * info.height} pixels; "
                f"at most {max_pixels} (--max-pixels)",
                index=i,
            )


# --- the command ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` command's arguments (imports nothing heavy)."""
    d = Limits.__dataclass_fields__
    parser.add_argument(
        "config", help="pipeline YAML file, or a bundled config's name (paddlemix-iqa configs)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override an op parameter (blur.max_value=0.9)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="JSON 'path' images are read only under this folder (symlinks resolved); default: the config's image_root",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", help="processes for the CPU ops (default: the config's)"
    )
    parser.add_argument("--max-upload-bytes", type=int, default=d["max_upload_bytes"].default, metavar="B")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=0,
        metavar="P",
        help="per image (default: PADDLEMIX_IQA_MAX_PIXELS or 200 MP)",
    )
    parser.add_argument(
        "--max-images", type=int, default=d["max_images"].default, metavar="N", help="per /v1/score"
    )
    parser.add_argument(
        "--max-batch-images",
        type=int,
        default=d["max_batch_images"].default,
        metavar="N",
        help="per /v1/score:batch",
    )
    parser.add_argument(
        "--timeout", type=float, default=d["timeout"].default, metavar="S", help="per /v1/score"
    )
    parser.add_argument(
        "--batch-timeout",
        type=float,
        default=d["batch_timeout"].default,
        metavar="S",
        help="per /v1/score:batch",
    )
    parser.add_argument(
        "--batch-images", type=int, default=16, metavar="N", help="neural ops: batch up to N images ..."
    )
    parser.add_argument(
        "--batch-wait-ms", type=float, default=10.0, metavar="T", help="... or T ms (default 10)"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"require 'Authorization: Bearer <token>' with the token in FILE (or in ${TOKEN_ENV})",
    )
    parser.add_argument("--max-connections", type=int, default=512, metavar="N", help="beyond this, 503")
    parser.add_argument(
        "--weights-dir",
        dest="weights_dir",
        metavar="DIR",
        help="folder holding the models as DIR/<name>/ (default: $PADDLEMIX_IQA_HOME or ~/.cache/paddlemix_iqa)",
    )


def _token(args: argparse.Namespace) -> str | None:
    from ..pipeline.config import ConfigError

    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ConfigError(f"--token-file {args.token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def run(args: argparse.Namespace) -> int:
    """Load the config and its ops, then serve until interrupted (exit 0; 1 when the port cannot be bound)."""
    import uvicorn

    from ..pipeline.config import ConfigError, load_config
    from .engine import Engine

    for name in ("max_upload_bytes", "max_pixels", "max_images", "max_batch_images", "batch_images", "port"):
        if getattr(args, name) < (0 if name in ("max_pixels", "port") else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    if args.workers is not None and not 1 <= args.workers <= 256:
        raise ConfigError("--workers must be between 1 and 256")
    config = load_config(args.config, list(args.overrides))
    root = Path(args.root).expanduser() if args.root else config.image_root
    root = root.resolve()
    if not root.is_dir():
        log.warning("the allowed root %s is not a folder: requests by path will find nothing", root)
    limits = Limits(
        args.max_upload_bytes,
        args.max_pixels,
        args.max_images,
        args.max_batch_images,
        args.timeout,
        args.batch_timeout,
    )
    token = _token(args)
    if args.host not in LOOPBACK:
        log.warning(
            "binding %s: reachable from other machines%s", args.host, "" if token else " WITHOUT a token"
        )
    engine = Engine(config, root, args.workers, args.batch_images, args.batch_wait_ms / 1000.0)
    spool = tempfile.mkdtemp(prefix="paddlemix-iqa-serve-")
    try:
        app = create_app(engine, limits, token, spool)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=args.host,
                port=args.port,
                log_level="info" if log.isEnabledFor(logging.INFO) else "warning",
                timeout_keep_alive=5,
                limit_concurrency=args.max_connections,
                server_header=False,
            )
        )
        print(
            f"serving {config.source} on http://{args.host}:{args.port} (root {root}); /readyz says when loaded"
        )
        server.run()
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return 0 if server.started else 1
