"""The TOML config file: a fixed set of known keys, each with a type and a check."""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.errors import ConfigError
from llmtui.paths import Paths

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(value: object) -> float:
    """Seconds from '5m', '1h30m', '300', 300, '-1' or '0'; negative means forever."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5m, 30s, 0 or -1")
    if isinstance(value, int | float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("expected a finite duration")
        return float(value)
    text = str(value).strip().lower()
    if not text:
        raise ValueError("expected a duration such as 5m, 30s, 0 or -1")
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    try:
        return sign * float(body)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        number, unit = float(match.group(1)), match.group(2)
        total += number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise ValueError(f"'{value}' is not a duration (examples: 5m, 30s, 1h, 0, -1)")
    return sign * total


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9,
               "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 1024, "mib": 1024**2,
               "gib": 1024**3, "tib": 1024**4}


def parse_size(value: object) -> int:
    """Bytes from 4GB, 512MiB, 1000000 (plain bytes)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 4GB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"'{value}' is not a size (examples: 4GB, 512MiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_memory_budget(value: object) -> str:
    """A share of RAM ('70%') or an absolute size ('8GB'); kept as text, checked here."""
    text = str(value).strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            raise ValueError(f"'{value}' is not a percentage") from None
        if not 0 < share <= 100:
            raise ValueError("a share of RAM must be between 0% and 100%")
        return text
    parse_size(text)
    return text


def _number(lo: float | None, hi: float | None, *, integer: bool) -> Callable[[object], Any]:
    def check(value: object) -> int | float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            num: int | float = int(str(value), 10) if integer else float(str(value))
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise ValueError(f"expected {kind}, got '{value}'") from None
        if isinstance(num, float) and (math.isnan(num) or math.isinf(num)):
            raise ValueError("expected a finite number")
        if (lo is not None and num < lo) or (hi is not None and num > hi):
            raise ValueError(f"expected a value from {lo} to {hi}, got {num}")
        return num

    return check


def _text(value: object) -> str:
    text = str(value)
    if not text.strip() or "\x00" in text:
        raise ValueError("expected a non-empty string")
    return text


def _model_name(value: object) -> str:
    from llmtui.errors import InvalidInput
    from llmtui.models.names import ModelName

    try:
        return str(ModelName.parse(str(value)))
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


def _path(value: object) -> str:
    text = _text(value)
    return str(Path(text).expanduser())


def _duration_text(value: object) -> str | int | float:
    parse_duration(value)
    return value if isinstance(value, int | float) else str(value)


def stream_interval(value: object) -> float:
    """Seconds from a stream_interval setting or option (0 to 1 s)."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an interval (e.g. 50ms, 0.05 or 0)") from None
    if not 0 <= seconds <= 1:
        raise ValueError(f"'{value}' is out of range (0 to 1s, e.g. 20ms)")
    return seconds


def _interval_text(value: object) -> str | int | float:
    stream_interval(value)
    return value if isinstance(value, int | float) else str(value)


def _size_text(value: object) -> str | int:
    parse_size(value if isinstance(value, str) else str(value))
    return value if isinstance(value, int) else str(value)


def _endpoints(value: object) -> str:
    from llmtui.backends.ggml_devices import parse_endpoints

    found = parse_endpoints(_text(value))
    if not found:
        raise ValueError("expected HOST:PORT[,HOST:PORT...]")
    return ",".join(found)


def _choice(*allowed: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        text = str(value).strip().lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got '{value}'")
        return text

    return check


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got '{value}'")


@dataclass(frozen=True)
class Key:
    """One config key: its check, its default and what it is for."""

    name: str
    check: Callable[[object], Any]
    default: Any
    help: str


KEYS: dict[str, Key] = {
    k.name: k
    for k in [
        Key("default_model", _model_name, "smollm2:135m", "model used when none is given"),
        Key("embed_model", _model_name, "all-minilm:l6-v2",
            "embedding model for llm embed and new RAG collections"),
        Key("vision_model", _model_name, None,
            "model for llm describe and for --image without -m (default: default_model)"),
        Key("speech_model", _model_name, "whisper:tiny.en",
            "speech-to-text model for llm transcribe, listen and voice"),
        Key("voice", _model_name, "piper:en_us-joe",
            "text-to-speech voice for llm speak and voice"),
        Key("max_audio_upload", _size_text, "1GB",
            "largest audio file the API accepts for transcription (spooled to disk)"),
        Key("rag_max_file_size", _size_text, "20MB",
            "larger files are skipped by llm rag add, with a warning"),
        Key("models_dir", _path, None, "where models are stored (LLMTUI_MODELS overrides)"),
        Key("keep_alive", _duration_text, "5m", "how long a model stays loaded after use"),
        Key("max_loaded_models", _number(1, 64, integer=True), 3, "models loaded at once"),
        Key("memory_budget", parse_memory_budget, "75%", "RAM the loaded models may use"),
        Key("max_queue", _number(1, 10000, integer=True), 64, "queued requests per model"),
        Key("daemon_idle_timeout", _duration_text, "30m",
            "the daemon exits after this long with nothing loaded (-1: never)"),
        Key("temperature", _number(0, 5, integer=False), 0.8, "sampling temperature"),
        Key("top_p", _number(0, 1, integer=False), 0.9, "nucleus sampling"),
        Key("top_k", _number(0, 100000, integer=True), 40, "top-k sampling (0: off)"),
        Key("min_p", _number(0, 1, integer=False), 0.05, "min-p sampling"),
        Key("repeat_penalty", _number(0, 10, integer=False), 1.1, "repetition penalty"),
        Key("seed", _number(-1, 2**32 - 1, integer=True), -1, "sampling seed (-1: random)"),
        Key("max_tokens", _number(-1, 1_000_000, integer=True), -1,
            "tokens to generate at most (-1: until the context is full)"),
        Key("context_length", _number(0, 10_000_000, integer=True), 4096,
            "context window for loaded models (0: the model's own)"),
        Key("threads", _number(0, 1024, integer=True), 0, "CPU threads (0: automatic)"),
        Key("num_parallel", _number(1, 64, integer=True), 4,
            "requests one loaded model serves at once (parallel slots, each with its own "
            "context; fewer when memory is short; LLMTUI_NUM_PARALLEL / OLLAMA_NUM_PARALLEL)"),
        Key("flash_attention", _choice("auto", "on", "off"), "auto",
            "llama.cpp flash attention (auto: where the device supports it)"),
        Key("draft", _text, "lookup",
            "speculative decoding: lookup (guesses copied from the prompt and the reply), none, "
            "or a small model with the same vocabulary"),
        Key("stream_interval", _interval_text, "50ms",
            "a streamed reply's first token is sent at once, later ones at most this often, "
            "merged (0: each token as it is made; fewer lines leave more CPU to the model "
            "on a small machine); a request's options.stream_interval overrides"),
        Key("kv_cache_type", _choice("auto", "f16", "bf16", "q8_0", "q4_0"), "auto",
            "KV cache precision (auto: keys f16, values bf16, so a sequence's numbers never "
            "depend on batching; q8_0/q4_0 save memory; OLLAMA_KV_CACHE_TYPE overrides)"),
        Key("prompt_cache_size", _size_text, "2GB",
            "disk space for saved prompt states (long prompts restored after an unload or a "
            "restart instead of evaluated again; 0: off)"),
        Key("gpu_layers", _number(-1, 100000, integer=True), -1,
            "layers offloaded to the GPU (-1: all, when the build supports it)"),
        Key("rpc_servers", _endpoints, None,
            "llama.cpp RPC servers (`llm rpc-worker` on other boxes), HOST:PORT,... : GGUF "
            "models offload their layers to them (LLMTUI_RPC_SERVERS, llm serve --rpc)"),
        Key("onnx_providers", _text, "cpu",
            "ONNX Runtime execution providers, in order (cpu, cuda, tensorrt, dml, openvino)"),
        Key("openvino_device", _text, "CPU", "OpenVINO device: CPU, GPU, NPU or AUTO"),
        Key("host", _text, None, "TCP address the daemon listens on (off when unset)"),
        Key("api_key", _text, None, "key required from TCP clients (LLMTUI_API_KEY)"),
        Key("allowed_hosts", _text, None,
            "extra Host header names accepted on TCP, comma-separated ('*': any)"),
        Key("cors_origins", _text, None,
            "browser origins allowed to call the API, comma-separated ('*': any)"),
        Key("max_body", _size_text, "32MB", "largest request body the API accepts"),
        Key("max_prompt_chars", _number(1, 10**9, integer=True), 4_000_000,
            "longest prompt or message text the API accepts"),
        Key("max_image_size", _size_text, "20MB", "largest image (encoded) the API accepts"),
        Key("max_image_pixels", _number(1, 10**10, integer=True), 50_000_000,
            "images declaring more pixels are refused (decompression bombs)"),
        Key("max_messages", _number(1, 10**6, integer=True), 2000,
            "most messages in one chat request"),
        Key("max_predict", _number(1, 10**7, integer=True), 131072,
            "most tokens one request may ask to generate"),
        Key("request_timeout", _duration_text, "60s",
            "a client that takes longer to send its request is cut off"),
        Key("header_timeout", _duration_text, "10s",
            "a connection that has not sent a whole request head by then is closed"),
        Key("idle_connection_timeout", _duration_text, "5s",
            "an idle keep-alive connection is closed after this long"),
        Key("offline", _bool, False,
            "refuse every outbound connection, pulls included (LLMTUI_OFFLINE=1)"),
        Key("theme", _text, "llmtui-dark", "chat theme (see themes/)"),
        Key("color", _bool, True, "use colour on a terminal (NO_COLOR also turns it off)"),
    ]
}


class Config:
    """The config file's values, checked on load; unknown keys are errors."""

    def __init__(self, path: Path, values: dict[str, Any]) -> None:
        self.path = path
        self.values = values

    @classmethod
    def load(cls, path: Path) -> Config:
        if not path.exists():
            return cls(path, {})
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        values = {name: cls._check(path, name, value) for name, value in raw.items()}
        return cls(path, values)

    @staticmethod
    def _check(path: Path, name: str, value: object) -> Any:
        key = KEYS.get(name)
        if key is None:
            raise ConfigError(
                f"unknown config key '{name}' in {path}",
                hint="known keys: " + ", ".join(sorted(KEYS)),
            )
        try:
            return key.check(value)
        except ValueError as exc:
            raise ConfigError(f"bad value for '{name}' in {path}: {exc}") from None

    def get(self, name: str) -> Any:
        if name not in KEYS:
            raise ConfigError(f"unknown config key '{name}' (file: {self.path})",
                              hint="known keys: " + ", ".join(sorted(KEYS)))
        return self.values.get(name, KEYS[name].default)

    def set(self, name: str, raw: str) -> Any:
        """Check and store one value, then write the file atomically."""
        value = self._check(self.path, name, raw)
        self.values[name] = value
        self.save()
        return value

    def unset(self, name: str) -> None:
        self._check_known(name)
        self.values.pop(name, None)
        self.save()

    def _check_known(self, name: str) -> None:
        if name not in KEYS:
            raise ConfigError(f"unknown config key '{name}' (file: {self.path})",
                              hint="known keys: " + ", ".join(sorted(KEYS)))

    def save(self) -> None:
        import tomli_w

        from llmtui.paths import open_private, private_dir

        private_dir(self.path.parent)
        tmp = self.path.with_suffix(".toml.tmp")
        tmp.unlink(missing_ok=True)  # a leftover may be readable by others: start afresh
        with open_private(tmp) as fh:  # 0600: the file may hold the API key
            fh.write(tomli_w.dumps(self.values))
        os.replace(tmp, self.path)

    def effective(self) -> dict[str, Any]:
        return {name: self.values.get(name, key.default) for name, key in KEYS.items()}


@dataclass(frozen=True)
class Settings:
    """Paths plus config: what every command and the daemon start from."""

    paths: Paths
    config: Config

    @classmethod
    def load(cls, environ: dict[str, str] | None = None) -> Settings:
        paths = Paths.from_env(environ)
        return cls(paths, Config.load(paths.config_file))

    @property
    def models_dir(self) -> Path:
        """LLMTUI_MODELS, else the models_dir key, else the data folder's models/."""
        if self.paths.models_env is not None:
            return self.paths.models_env
        configured = self.config.get("models_dir")
        return Path(configured) if configured else self.paths.default_models_dir

    def store(self) -> Any:
        from llmtui.models.store import Store

        return Store(self.models_dir)
