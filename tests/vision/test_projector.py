"""The test projector is a real one: llama-cpp-python's own mtmd loads it with SmolLM2-135M,
turns a 32x32 image into 16 image tokens, and different images change the model's next
token. This is the proof the engine's mtmd evaluation builds on."""

from __future__ import annotations

import ctypes
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtui.errors import BadModelFile
from llmtui.models.gguf_info import read_info
from llmtui.models.projector import check_pair, read_projector
from tests.projector import IMAGE_TOKENS, SMOLLM_EMBD, make_png, write_projector

PROMPT = "<|im_start|>user\n<__media__>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"


class Mtmd:
    """The test model and projector loaded in this process through llama_cpp.mtmd_cpp."""

    def __init__(self, smollm: Path, projector: Path) -> None:
        import llama_cpp
        from llama_cpp import mtmd_cpp

        self.lib, self.m = llama_cpp, mtmd_cpp
        self.llm = llama_cpp.Llama(model_path=str(smollm), n_ctx=256, n_batch=64,
                                   n_threads=2, verbose=False)
        self.ctx = self.init(projector)
        assert self.ctx, "mtmd_init_from_file refused the test projector"

    def init(self, projector: Path) -> Any:
        params = self.m.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = 2
        params.print_timings = False
        return self.m.mtmd_init_from_file(str(projector).encode(), self.llm.model, params)

    def eval(self, png: bytes) -> tuple[list[tuple[int, int]], int, list[float]]:
        """(chunk types and token counts, positions used, logits of the last position)."""
        from PIL import Image

        m = self.m
        img = Image.open(io.BytesIO(png)).convert("RGB")
        raw = img.tobytes()
        bitmap = m.mtmd_bitmap_init(img.width, img.height,
                                    (ctypes.c_uint8 * len(raw)).from_buffer_copy(raw))
        text = PROMPT.encode()
        inp = m.mtmd_input_text()
        inp.text, inp.text_len, inp.add_special, inp.parse_special = text, len(text), True, True
        chunks = m.mtmd_input_chunks_init()
        try:
            rc = m.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp),
                                 (m.mtmd_bitmap_p_ctypes * 1)(bitmap), 1)
            assert rc == 0, f"mtmd_tokenize failed: {rc}"
            shape = []
            for i in range(m.mtmd_input_chunks_size(chunks)):
                chunk = m.mtmd_input_chunks_get(chunks, i)
                shape.append((m.mtmd_input_chunk_get_type(chunk),
                              m.mtmd_input_chunk_get_n_tokens(chunk)))
            self.llm._ctx.kv_cache_clear()
            n_past = self.lib.llama_pos(0)
            rc = m.mtmd_helper_eval_chunks(self.ctx, self.llm._ctx.ctx, chunks, 0, 0, 64, True,
                                           ctypes.byref(n_past))
            assert rc == 0, f"mtmd_helper_eval_chunks failed: {rc}"
            logits = self.lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
            return shape, n_past.value, [logits[i] for i in range(self.llm.n_vocab())]
        finally:
            m.mtmd_input_chunks_free(chunks)
            m.mtmd_bitmap_free(bitmap)

    def close(self) -> None:
        self.m.mtmd_free(self.ctx)
        self.llm.close()


@pytest.fixture(scope="module")
def mtmd(smollm: Path, projector: Path) -> Iterator[Mtmd]:
    loaded = Mtmd(smollm, projector)
    yield loaded
    loaded.close()


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def test_the_projector_makes_16_tokens_per_image(mtmd: Mtmd) -> None:
    text_only = mtmd.llm.tokenize(PROMPT.replace("<__media__>", "").encode(), special=True)
    for size in ((32, 32), (64, 20), (7, 300)):  # every image is resized to 32x32
        shape, n_past, _ = mtmd.eval(make_png(size=size))
        text_type, image_type = (mtmd.m.MTMD_INPUT_CHUNK_TYPE_TEXT,
                                 mtmd.m.MTMD_INPUT_CHUNK_TYPE_IMAGE)
        assert [t for t, _ in shape] == [text_type, image_type, text_type]
        assert shape[1][1] == IMAGE_TOKENS == 16
        assert n_past == sum(n for _, n in shape)
        assert abs(n_past - (len(text_only) + IMAGE_TOKENS)) <= 2  # the marker's newline


def test_different_images_change_the_greedy_reply(mtmd: Mtmd) -> None:
    _, _, red = mtmd.eval(make_png(color=(200, 30, 30)))
    _, _, green = mtmd.eval(make_png(color=(10, 200, 30), pattern=3))
    _, _, red_again = mtmd.eval(make_png(color=(200, 30, 30)))
    assert red == red_again  # deterministic
    assert argmax(red) != argmax(green)


def test_llama_cpp_refuses_a_projector_of_another_width(mtmd: Mtmd, tmp_path: Path) -> None:
    wide = write_projector(tmp_path / "wide.gguf", n_embd_text=960)
    assert not mtmd.init(wide)  # an error, not an abort: and llmtui refuses it at import


def test_projector_info(projector: Path, smollm: Path) -> None:
    info = read_projector(projector)
    assert (info.projector_type, info.vision, info.audio) == ("mlp", True, False)
    assert (info.image_size, info.patch_size, info.tokens_per_image) == (32, 8, IMAGE_TOKENS)
    assert info.output_width == SMOLLM_EMBD
    assert read_info(projector).is_projector and not read_info(smollm).is_projector
    check_pair(read_info(smollm), info, text_label="m", projector_label="p")


@pytest.mark.parametrize(("flaw", "message"), [
    ("int32_key", "'clip.vision.image_size' has type int32, llama.cpp needs uint32"),
    ("no_patch_size", "clip.vision.patch_size is missing"),
])
def test_malformed_projectors_are_named(tmp_path: Path, flaw: str, message: str) -> None:
    path = write_projector(tmp_path / f"{flaw}.gguf", flaw=flaw)
    with pytest.raises(BadModelFile, match=message):
        read_projector(path)


def test_what_counts_as_a_projector(tmp_path: Path, smollm: Path) -> None:
    # llama.cpp never reads general.type: clip.* keys make a projector whatever it says.
    unmarked = write_projector(tmp_path / "unmarked.gguf", flaw="model_type")
    assert read_projector(unmarked).projector_type == "mlp"
    with pytest.raises(BadModelFile, match="is not a projector"):
        read_projector(smollm)


def test_a_projector_of_another_width_is_refused(tmp_path: Path, smollm: Path) -> None:
    wide = read_projector(write_projector(tmp_path / "wide.gguf", n_embd_text=960))
    with pytest.raises(BadModelFile, match="makes 960-wide embeddings, the model's n_embd "
                                           "is 576"):
        check_pair(read_info(smollm), wide, text_label="smollm", projector_label="wide")
