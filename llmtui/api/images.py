"""Images in API requests: gathered from each API's shape, checked against the model, and
decoded (llmtui.media) before the request reaches a worker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from llmtui.errors import InvalidInput
from llmtui.media import ImageLimits, b64decode, check_total, decode, split_data_uri
from llmtui.models.names import ModelName
from llmtui.models.store import Store


@dataclass(frozen=True)
class RawImage:
    """One image as a client sent it, not yet decoded."""

    label: str  # names it in errors: "image 2 of message 1"
    text: str
    data_uri_only: bool = False  # OpenAI: data: URIs only; Ollama: raw base64 (or a data URI)

    def bytes(self) -> bytes:
        if self.data_uri_only or self.text.lstrip()[:5].lower() == "data:":
            return split_data_uri(self.text, self.label)
        return b64decode(self.text, self.label)


def ollama_images(value: Any, where: str) -> list[RawImage]:
    """Ollama's ``images``: a list of base64 strings (``where``: "" or " of message 2")."""
    if value is None or value == []:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"'images'{where} must be a list of base64 strings")
    return [RawImage(f"image {i}{where}", v) for i, v in enumerate(value, 1)]


def openai_image(part: dict[str, Any], label: str) -> RawImage:
    """An ``image_url`` (string or {url}) or ``input_image`` content part."""
    ref = part.get("image_url")
    if isinstance(ref, dict):
        ref = ref.get("url")
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput(f"{label}: 'image_url' must be a data: URI string or {{\"url\": ...}}")
    return RawImage(label, ref, data_uri_only=True)


def check_vision(store: Store, model: str) -> None:
    """Refuse images for a model without a projector, before any work is done."""
    manifest = store.get(ModelName.parse(model))
    if manifest.projector is None:
        raise InvalidInput(f"'{manifest.name}' cannot read images (it is not a vision model)",
                           hint="use a model with a projector: llm catalog vision")


def _decode_all(groups: list[list[RawImage]], limits: ImageLimits) -> list[list[dict[str, Any]]]:
    decoded = [[decode(raw.bytes(), label=raw.label, limits=limits) for raw in group]
               for group in groups]
    check_total([image for group in decoded for image in group])
    return [[image.to_wire() for image in group] for group in decoded]


async def decode_images(store: Store, model: str, groups: list[list[RawImage]],
                        limits: ImageLimits) -> list[list[dict[str, Any]]]:
    """Decode every group's images (one group per message, or one for a prompt) into the
    worker's form; an empty result per group when there are none."""
    if not any(groups):
        return [[] for _ in groups]
    check_vision(store, model)
    # Pillow decodes off the event loop: other requests keep streaming meanwhile.
    return await asyncio.to_thread(_decode_all, groups, limits)
