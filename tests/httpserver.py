"""A real HTTP server on 127.0.0.1 that serves model files like a hub would.

Supports Range (resume), Hugging Face's resolve routes with X-Linked-Etag, and injected
faults: 404, 500, an HTML page, a connection dropped after N bytes, slow bodies.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Fault:
    kind: str  # "404" | "500" | "html" | "drop" | "slow"
    after: int = 0  # bytes before dropping
    times: int = 1_000_000  # how many requests the fault applies to
    delay: float = 0.0  # seconds between 64 KiB chunks for "slow"


@dataclass
class ServerState:
    files: dict[str, Path] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    report_hash: bool = True


from tests.fetch_models import sha256_of as sha256_file  # noqa: E402  (one hashing helper)


class Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, *args: Any) -> None:
        return

    @property
    def state(self) -> ServerState:
        return self.server.state  # type: ignore[no-any-return]

    def _fault(self, path: str) -> Fault | None:
        fault = self.state.faults.get(path)
        if fault is None or fault.times <= 0:
            return None
        fault.times -= 1
        return fault

    def _hf(self, path: str) -> str | None:
        m = re.match(r"^/([^/]+/[^/]+)/resolve/[^/]+/(.+)$", path)
        return f"/cdn/{m.group(1)}/{m.group(2)}" if m else None

    def do_HEAD(self) -> None:
        self.state.requests.append(("HEAD", self.path, self.headers.get("Range")))
        cdn = self._hf(self.path)
        target = cdn or self.path
        if target not in self.state.files:
            self.send_response(404)
            self.end_headers()
            return
        file = self.state.files[target]
        if cdn:
            self.send_response(302)
            self.send_header("Location", cdn)
            if self.state.report_hash:
                digest = self.state.hashes.setdefault(target, sha256_file(file))
                self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(file.stat().st_size))
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(file.stat().st_size))
        self.end_headers()

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        self.state.requests.append(("GET", self.path, rng))
        cdn = self._hf(self.path)
        if cdn:
            self.send_response(302)
            self.send_header("Location", cdn)
            self.end_headers()
            return
        fault = self._fault(self.path)
        if fault and fault.kind in ("404", "500"):
            self.send_response(int(fault.kind))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault and fault.kind == "html":
            body = b"<!doctype html><html><body>Sign in to continue</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        file = self.state.files.get(self.path)
        if file is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = file.stat().st_size
        start = 0
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and int(m.group(1)) < size:
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        sent = 0
        with file.open("rb") as fh:
            fh.seek(start)
            while chunk := fh.read(1 << 16):
                if fault and fault.kind == "drop" and sent + len(chunk) > fault.after:
                    self.wfile.write(chunk[: max(0, fault.after - sent)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(chunk)
                if fault and fault.kind == "slow":
                    time.sleep(fault.delay)


class ModelServer:
    """Context manager: start on an ephemeral loopback port, stop on exit."""

    def __init__(self) -> None:
        self.state = ServerState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, route: str, path: Path) -> str:
        self.state.files[route] = path
        return self.url + route

    def __enter__(self) -> ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
