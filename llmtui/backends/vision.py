"""Images into a llama.cpp model through its multimodal projector (llama.cpp's mtmd).

The daemon has already decoded and checked every image (llmtui.media) and sends raw RGB.
Here the prompt, rendered with a media marker where each image goes, is split by
``mtmd_tokenize`` into text tokens and image chunks. An image takes positions in the
sequence like text does; in the slot's token list (the prefix-cache key) those positions
hold a negative id derived from the image's hash, so a cached prefix is reused for the same
image and never for a different one.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
from dataclasses import dataclass, field
from typing import Any

from llmtui.errors import BadModelFile, InvalidInput


def image_ids(sha256: str, n_pos: int) -> list[int]:
    """The placeholder tokens of an image's positions: negative (never a real token) and
    int32 (the disk cache packs tokens so). Position k holds 31 bits of the hash taken at
    k mod 8, so a whole image matches only when all 248 of those bits do: two different
    images never share a cached prefix in practice."""
    digest = (sha256 + "0" * 64)[:64]
    parts = [int(digest[8 * i:8 * i + 8], 16) & 0x7FFFFFFE for i in range(8)]
    return [-(parts[k % 8] + 1) for k in range(n_pos)]


@dataclass
class Media:
    """The image chunks of one prompt, by the position where each one starts."""

    chunks: Any  # mtmd_input_chunks (owns every chunk below)
    spans: dict[int, tuple[Any, int]] = field(default_factory=dict)  # start -> (chunk, n_pos)
    images: int = 0

    def starts_after(self, pos: int) -> int | None:
        later = [s for s in self.spans if s >= pos]
        return min(later) if later else None

    def align(self, keep: int) -> int:
        """A cached prefix may not end inside an image: back off to the image's start."""
        for start, (_chunk, n) in self.spans.items():
            if start < keep < start + n:
                return start
        return keep

    def free(self) -> None:
        if self.chunks is not None:
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_input_chunks_free(self.chunks)
            self.chunks = None


class Projector:
    """A loaded projector (mmproj GGUF) for one text model."""

    def __init__(self, path: str, model: Any, threads: int, gpu: bool) -> None:
        from llama_cpp import mtmd_cpp as M

        from llmtui.backends.llama_native import log_callback, log_mark, recent_errors

        self.M = M
        cb = log_callback()
        if cb is not None:
            M.mtmd_log_set(cb, ctypes.c_void_p(0))
            M.mtmd_helper_log_set(cb, ctypes.c_void_p(0))
        params = M.mtmd_context_params_default()
        params.use_gpu = gpu
        params.n_threads = threads
        params.print_timings = False
        params.warmup = False
        mark = log_mark()
        self.ctx = M.mtmd_init_from_file(path.encode(), model.model, params)
        if not self.ctx:
            why = "; ".join(recent_errors(mark)) or "llama.cpp refused it"
            raise BadModelFile(f"the vision projector could not be loaded: {why}")
        if not M.mtmd_support_vision(self.ctx):
            self.close()
            raise BadModelFile("the projector has no vision encoder")
        self.marker = (M.mtmd_default_marker() or b"<__media__>").decode()

    def tokenize(self, text: str, images: list[dict[str, Any]]) -> tuple[list[int], Media]:
        """Tokens of ``text`` (which holds one marker per image, in order) with placeholder
        ids where each image goes, and the image chunks to evaluate."""
        M = self.M
        bitmaps = []
        try:
            for img in images:
                w, h = int(img["width"]), int(img["height"])
                rgb = base64.b64decode(str(img["rgb"]))
                if w <= 0 or h <= 0 or len(rgb) != w * h * 3:
                    raise InvalidInput("an image's pixels do not match its size")
                sha = str(img.get("sha256") or hashlib.sha256(rgb).hexdigest())
                buf = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
                bm = M.mtmd_bitmap_init(w, h, buf)
                if not bm:
                    raise InvalidInput("an image could not be prepared for the model")
                M.mtmd_bitmap_set_id(bm, sha.encode())
                bitmaps.append((bm, sha))
            chunks = M.mtmd_input_chunks_init()
            raw = text.encode("utf-8")
            inp = M.mtmd_input_text(text=raw, text_len=len(raw), add_special=True,
                                    parse_special=True)
            arr = (M.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*[b for b, _ in bitmaps])
            rc = M.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), arr, len(bitmaps))
            if rc != 0:
                M.mtmd_input_chunks_free(chunks)
                raise InvalidInput("the images do not match the prompt's image markers"
                                   if rc == 1 else f"the image could not be tokenized ({rc})")
        finally:
            for bm, _sha in bitmaps:
                M.mtmd_bitmap_free(bm)
        media = Media(chunks=chunks)
        tokens: list[int] = []
        for i in range(M.mtmd_input_chunks_size(chunks)):
            chunk = M.mtmd_input_chunks_get(chunks, i)
            if M.mtmd_input_chunk_get_type(chunk) == 0:  # text
                n = ctypes.c_size_t(0)
                ptr = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens.extend(int(ptr[j]) for j in range(n.value))
                continue
            n_pos = int(M.mtmd_input_chunk_get_n_pos(chunk))
            ident = (M.mtmd_input_chunk_get_id(chunk) or b"0").decode(errors="replace")
            media.spans[len(tokens)] = (chunk, n_pos)
            media.images += 1
            tokens.extend(image_ids(ident, n_pos))
        return tokens, media

    def eval(self, lctx: Any, chunk: Any, n_past: int, seq: int, n_batch: int,
             logits_last: bool) -> int:
        """Encode an image and put its embeddings in the sequence; llama.cpp's status."""
        import llama_cpp as L

        new_past = L.llama_pos(0)
        return int(self.M.mtmd_helper_eval_chunk_single(
            self.ctx, lctx, chunk, n_past, seq, n_batch, logits_last, ctypes.byref(new_past)))

    def close(self) -> None:
        if self.ctx:
            self.M.mtmd_free(self.ctx)
            self.ctx = None


def with_markers(messages: list[dict[str, Any]], marker: str) -> tuple[list[dict[str, Any]],
                                                                     list[dict[str, Any]]]:
    """Messages whose images become markers at the start of their text (in order), and
    the images in the same order."""
    out, images = [], []
    for m in messages:
        imgs = list(m.get("images") or [])
        if not imgs:
            out.append(m)
            continue
        images.extend(imgs)
        text = "".join(marker + "\n" for _ in imgs) + str(m.get("content") or "")
        out.append({k: v for k, v in m.items() if k != "images"} | {"content": text})
    return out, images
