"""Model names (``[namespace/]name[:tag]``) and digests, validated before they touch a path."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmtui.errors import InvalidInput

_PART = r"[a-z0-9][a-z0-9._-]{0,79}"
_NAME_RE = re.compile(rf"^(?:{_PART}/)?{_PART}$")
_TAG_RE = re.compile(r"^[a-z0-9_][a-z0-9._-]{0,127}$")
#: Digests from outside are checked against this before any use (cf. CVE-2024-37032).
DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
SHA256_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_TAG = "latest"


@dataclass(frozen=True, order=True)
class ModelName:
    """A validated model name; its parts are safe to use as path components."""

    name: str
    tag: str = DEFAULT_TAG

    @classmethod
    def parse(cls, text: str) -> ModelName:
        raw = text.strip()
        lowered = raw.lower()
        name, sep, tag = lowered.rpartition(":")
        if not sep:
            name, tag = lowered, DEFAULT_TAG
        # A ':' inside the namespace part (e.g. a URL) is not a name.
        if not name or not _NAME_RE.match(name) or ".." in name:
            raise InvalidInput(
                f"invalid model name '{raw}'",
                hint="use letters, digits, '.', '_' and '-', e.g. smollm2:135m",
            )
        if not _TAG_RE.match(tag) or ".." in tag:
            raise InvalidInput(
                f"invalid tag in model name '{raw}'",
                hint="a tag uses letters, digits, '.', '_' and '-', e.g. :latest",
            )
        return cls(name, tag)

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"


def parse_digest(text: str) -> str:
    """Return the 64-hex sha256 of a 'sha256:<hex>' or 'sha256-<hex>' digest, or raise."""
    match = DIGEST_RE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise InvalidInput(
            "invalid digest", hint="expected sha256:<64 lowercase hex digits>"
        )
    return match.group(1)


def check_sha256_hex(text: str) -> str:
    value = text.strip().lower()
    if not SHA256_HEX_RE.match(value):
        raise InvalidInput("invalid sha256", hint="expected 64 hex digits")
    return value
