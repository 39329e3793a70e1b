"""Errors the user can act on, each mapped to a distinct process exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; scripts can rely on these."""

    OK = 0
    ERROR = 1
    USAGE = 2
    MODEL_NOT_FOUND = 3
    INVALID_INPUT = 4
    DOWNLOAD_FAILED = 5
    INTEGRITY = 6
    NO_SPACE = 7
    BAD_MODEL_FILE = 8
    DAEMON_UNAVAILABLE = 9
    GENERATION_FAILED = 10
    CONFIG = 11
    IN_USE = 12
    CONTEXT_OVERFLOW = 13
    BUSY = 14
    MISSING_EXTRA = 15
    COLLECTION_NOT_FOUND = 16
    EMBEDDING_MISMATCH = 17
    OFFLINE = 18
    NO_AUDIO_DEVICE = 19
    REMOTE_UNAVAILABLE = 20
    INTERRUPTED = 130


class LlmtuiError(Exception):
    """Base class: a one-line message meant for the user, and an exit code."""

    exit_code: ExitCode = ExitCode.ERROR
    #: HTTP status the API answers with for this error.
    http_status: int = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(LlmtuiError):
    exit_code = ExitCode.USAGE
    http_status = 400


class ModelNotFound(LlmtuiError):
    exit_code = ExitCode.MODEL_NOT_FOUND
    http_status = 404


class InvalidInput(LlmtuiError):
    exit_code = ExitCode.INVALID_INPUT
    http_status = 400


class DownloadError(LlmtuiError):
    exit_code = ExitCode.DOWNLOAD_FAILED
    http_status = 502


class IntegrityError(LlmtuiError):
    exit_code = ExitCode.INTEGRITY
    http_status = 502


class NoSpaceError(LlmtuiError):
    exit_code = ExitCode.NO_SPACE
    http_status = 507


class BadModelFile(LlmtuiError):
    exit_code = ExitCode.BAD_MODEL_FILE
    http_status = 400


class DaemonUnavailable(LlmtuiError):
    exit_code = ExitCode.DAEMON_UNAVAILABLE
    http_status = 503


class GenerationError(LlmtuiError):
    exit_code = ExitCode.GENERATION_FAILED
    http_status = 500


class ConfigError(LlmtuiError):
    exit_code = ExitCode.CONFIG
    http_status = 500


class InUseError(LlmtuiError):
    exit_code = ExitCode.IN_USE
    http_status = 409


class ContextOverflow(LlmtuiError):
    exit_code = ExitCode.CONTEXT_OVERFLOW
    http_status = 400


class BusyError(LlmtuiError):
    exit_code = ExitCode.BUSY
    http_status = 503


class CollectionNotFound(LlmtuiError):
    exit_code = ExitCode.COLLECTION_NOT_FOUND
    http_status = 404


class EmbeddingMismatch(LlmtuiError):
    """A collection is queried or extended with a model other than the one it was built with."""

    exit_code = ExitCode.EMBEDDING_MISMATCH
    http_status = 409


class NoAudioDevice(LlmtuiError):
    """No microphone or speaker can be opened (an SSH box, a container, a busy device)."""

    exit_code = ExitCode.NO_AUDIO_DEVICE
    http_status = 503


class RemoteUnavailable(LlmtuiError):
    """Another machine llmtui was told to use (an RPC server, a Ray cluster) cannot be
    reached, is busy, or speaks another version."""

    exit_code = ExitCode.REMOTE_UNAVAILABLE
    http_status = 502


class MissingExtra(LlmtuiError):
    """An optional dependency is not installed; the message names the extra."""

    exit_code = ExitCode.MISSING_EXTRA
    http_status = 501

    def __init__(self, module: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{module}' package, which is not installed",
            hint=f"install it with: pip install 'llmtui[{extra}]'",
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str, feature: str) -> object:
    """Import an optional module or raise MissingExtra naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(module, extra, feature) from exc
