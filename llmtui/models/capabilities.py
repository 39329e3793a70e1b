"""What a model can do, in Ollama's words (``/api/show`` capabilities), decided from the
model file: its chat template, architecture and metadata.

Front-ends read these to offer tools, thinking or images, so each is claimed only where
the model really has it: ``completion`` or ``embedding`` (an embedding model's GGUF sets
``{arch}.pooling_type``), ``tools`` and ``thinking`` from the chat template (Ollama's
tests), ``insert`` when the vocabulary has fill-in-the-middle tokens, ``vision`` when a
backend that reads images marks the model so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.models.store import Manifest, Store

#: Ollama's vocabulary, in its order.
VOCABULARY = ("completion", "tools", "insert", "vision", "embedding", "thinking")
_FIM_KEYS = ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id")


def template_has_tools(template: str | None) -> bool:
    """Ollama's test for a chat template that takes a tool list."""
    return bool(template) and ("tools" in str(template) or "tool_call" in str(template))


def capabilities(manifest: Manifest, metadata: dict[str, Any],
                 template: str | None) -> list[str]:
    """The model's capabilities, in Ollama's vocabulary and order."""
    from llmtui.backends.thinking import template_tags

    own = set(manifest.capabilities)
    if own & {"speech", "tts"}:
        # Speech models (Whisper, Piper) are not text models: our own words, beyond Ollama's.
        return [c for c in ("speech", "tts") if c in own]
    found = set()
    arch = str(metadata.get("general.architecture") or manifest.architecture or "")
    if "embedding" in own or f"{arch}.pooling_type" in metadata:
        found.add("embedding")
    else:
        found.add("completion")
        if template_has_tools(template):
            found.add("tools")
        if template_tags(template):
            found.add("thinking")
        if any(metadata.get(k, -1) not in (-1, None) for k in _FIM_KEYS):
            found.add("insert")
    found |= own & {"tools", "insert", "vision", "thinking"}  # a backend's own claims
    return [c for c in VOCABULARY if c in found]


@dataclass(frozen=True)
class ModelFacts:
    """What the API needs to know about a model before running it."""

    capabilities: tuple[str, ...]
    template: str | None  # the chat template in use (the model's own or a created one)
    thinking_tags: tuple[str, str] | None


_CACHE: dict[tuple[Any, ...], ModelFacts] = {}


def _facts(manifest: Manifest, path: Path) -> ModelFacts:
    from llmtui.backends.thinking import template_tags

    metadata: dict[str, Any] = {}
    template = manifest.template or None
    if manifest.format == "gguf":
        from llmtui.models.gguf_info import read_info

        info = read_info(path)
        metadata = info.metadata
        template = template or info.chat_template
    return ModelFacts(capabilities=tuple(capabilities(manifest, metadata, template)),
                      template=template, thinking_tags=template_tags(template))


def model_facts(store: Store, model: str) -> ModelFacts:
    """The facts of an installed model (cached per manifest and file: reading a GGUF's
    metadata takes a tenth of a second)."""
    manifest, path = store.resolve_file(model)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    key = (manifest.name, manifest.digest, manifest.template, tuple(manifest.capabilities),
           str(path), mtime)
    facts = _CACHE.get(key)
    if facts is None:
        if len(_CACHE) >= 64:
            _CACHE.clear()
        facts = _CACHE[key] = _facts(manifest, path)
    return facts
