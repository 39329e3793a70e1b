"""Network safety for the TCP listener: where to bind, API keys, Host allowlist, CORS.

The Unix socket is already private (0600 in a 0700 folder), so requests arriving on it
pass straight through; uvicorn reports them with a server address of (path, None). Everything that
arrives over TCP goes through :class:`Guard`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from llmtui.errors import ConfigError

DEFAULT_PORT = 11434
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_bind(text: str, port: int | None = None) -> Bind:
    """'127.0.0.1:11434', 'http://0.0.0.0:8080', ':11434', '[::1]:9000', 'localhost'."""
    raw = text.strip()
    if not raw:
        raise ConfigError("empty listen address")
    if "://" not in raw:
        raw = "http://" + (raw if not raw.startswith(":") else "127.0.0.1" + raw)
    try:
        parts = urlsplit(raw)
        host = parts.hostname or "127.0.0.1"
        parsed_port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad listen address '{text}': {exc}") from None
    if parts.scheme not in ("http", "https") or (parts.path not in ("", "/")):
        raise ConfigError(f"bad listen address '{text}' (expected HOST[:PORT])")
    return Bind(host=host, port=port or parsed_port or DEFAULT_PORT)


def bind_from_env(config_host: str | None) -> str | None:
    """LLMTUI_HOST, then Ollama's OLLAMA_HOST (so existing set-ups move over), then config."""
    return os.environ.get("LLMTUI_HOST") or os.environ.get("OLLAMA_HOST") or config_host


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def local_names(bind: Bind) -> set[str]:
    """Host names a legitimate client may use: loopback, this machine, its addresses."""
    names = set(LOOPBACK_NAMES)
    hostname = socket.gethostname()
    names |= {hostname.lower(), socket.getfqdn().lower(), bind.host.lower()}
    if bind.host in ("0.0.0.0", "::", ""):
        try:
            import psutil

            for addrs in psutil.net_if_addrs().values():
                names |= {a.address.split("%")[0].lower() for a in addrs
                          if a.family in (socket.AF_INET, socket.AF_INET6)}
        except Exception:
            pass
    return names


#: Browser origins allowed by default, as Ollama allows them: local pages on any port, and
#: desktop apps and editor webviews. OLLAMA_ORIGINS and ``cors_origins`` add to these.
DEFAULT_ORIGINS = (
    *(f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0")
      for scheme in ("http", "https") for port in ("", ":*")),
    "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
)
#: Host names under these suffixes are local by definition (RFC 6761 ``.localhost``,
#: mDNS ``.local``, and ``.internal``: Docker's ``host.docker.internal``); a web page
#: cannot rebind them, so they pass the DNS-rebinding check like loopback does.
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def _origin(text: str) -> str:
    """Origins compare without case or a trailing slash ("file://" keeps its own)."""
    text = text.strip().lower()
    return text[:-1] if text.endswith("/") and not text.endswith("://") else text


def _pattern_ok(pattern: str, origin: str) -> bool:
    """An origin against an allowed one, where one ``*`` matches any run of characters
    (the wildcard form of OLLAMA_ORIGINS: ``http://localhost:*``, ``app://*``)."""
    if "*" not in pattern:
        return origin == pattern
    head, _, tail = pattern.partition("*")
    if len(origin) < len(head) + len(tail) or not origin.startswith(head) \
            or not origin.endswith(tail):
        return False
    middle = origin[len(head):len(origin) - len(tail)]
    return middle.isdigit() if head.endswith(":") and not tail else True  # a port


def _ip_host_ok(name: str) -> bool:
    """A Host that is an IP address on this side of the network (loopback, private,
    link-local, unspecified): DNS rebinding needs a name, so these are safe, as in
    Ollama."""
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


@dataclass
class Policy:
    api_key: str | None = None
    hosts: set[str] = field(default_factory=set)
    any_host: bool = False
    origins: set[str] = field(default_factory=set)
    any_origin: bool = False

    @classmethod
    def build(cls, bind: Bind, api_key: str | None, allowed_hosts: str | None,
              cors_origins: str | None, insecure: bool) -> Policy:
        if not bind.loopback and not api_key and not insecure:
            raise ConfigError(
                f"refusing to listen on {bind.host} (not loopback) without an API key",
                hint="set one with --api-key, LLMTUI_API_KEY or `llm config set api_key`, "
                     "or pass --insecure if the network is trusted")
        extra = {h.lower() for h in _split(allowed_hosts)}
        origins = {_origin(o) for o in (
            *DEFAULT_ORIGINS, *_split(os.environ.get("OLLAMA_ORIGINS")),
            *_split(cors_origins))}
        return cls(api_key=api_key, hosts=local_names(bind) | (extra - {"*"}),
                   any_host="*" in extra, origins=origins - {"*"}, any_origin="*" in origins)

    def host_ok(self, host_header: str) -> bool:
        if not host_header:
            return False
        if self.any_host:
            return True
        try:
            name = (urlsplit("//" + host_header).hostname or "").lower()
        except ValueError:
            return False
        return name in self.hosts or name.endswith(LOCAL_SUFFIXES) or _ip_host_ok(name)

    def origin_ok(self, origin: str) -> bool:
        origin = _origin(origin)
        return self.any_origin or any(_pattern_ok(p, origin) for p in self.origins)

    def key_ok(self, headers: dict[str, str]) -> bool:
        if not self.api_key:
            return True
        given = headers.get("x-api-key", "")
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        # Constant time: the comparison does not reveal how much of the key matched.
        return hmac.compare_digest(given.encode(), self.api_key.encode())


CORS_METHODS = "GET, POST, DELETE, HEAD, OPTIONS"
# Ollama's list: what the ollama and openai JavaScript packages send from a browser.
CORS_HEADERS = ", ".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
    "X-Api-Key", "OpenAI-Beta", *(f"x-stainless-{h}" for h in (
        "arch", "async", "custom-poll-interval", "helper-method", "lang", "os",
        "package-version", "poll-helper", "retry-count", "runtime", "runtime-version",
        "timeout"))))


def over_tcp(scope: Mapping[str, Any]) -> bool:
    """Did this request arrive over TCP (rather than the private Unix socket)?"""
    server = scope.get("server")
    return server is not None and server[1] is not None


class Guard:
    """ASGI middleware applying a Policy to TCP requests (HTTP and WebSocket)."""

    def __init__(self, app: Any, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not over_tcp(scope):
            return await self.app(scope, receive, send)  # lifespan, or the Unix socket
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        origin = headers.get("origin", "")
        if not self.policy.host_ok(headers.get("host", "")):
            return await self._deny(scope, send, 403, "this Host is not allowed "
                                    "(add it to allowed_hosts)")
        if origin and not self.policy.origin_ok(origin):
            return await self._deny(scope, send, 403, "this Origin is not allowed "
                                    "(add it to cors_origins)")
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin")] if origin else []
        if scope["type"] == "http" and scope["method"] == "OPTIONS" and origin:
            await send({"type": "http.response.start", "status": 204, "headers": [
                *cors, (b"access-control-allow-methods", CORS_METHODS.encode()),
                (b"access-control-allow-headers", CORS_HEADERS.encode()),
                (b"access-control-max-age", b"600")]})
            await send({"type": "http.response.body", "body": b""})
            return None
        # GET / and HEAD / stay open: clients probe them to see that a server is there.
        probe = scope["type"] == "http" and scope["path"] == "/" and \
            scope["method"] in ("GET", "HEAD")
        if not probe and not self.policy.key_ok(headers):
            return await self._deny(scope, send, 401, "missing or wrong API key "
                                    "(send Authorization: Bearer KEY or x-api-key)",
                                    cors=cors)
        if not cors:
            return await self.app(scope, receive, send)

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)
        return await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _deny(scope: dict[str, Any], send: Any, status: int, message: str,
                    cors: list[tuple[bytes, bytes]] | None = None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps({"error": message, "code": "forbidden"}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), *(cors or [])]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
