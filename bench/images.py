"""Images benchmark: a one-image chat through the daemon against llama-cpp-python's mtmd in
one process, measured in the same run. Prints figures and ratios; never asserts.

  1. time to first token of a one-image chat: through the daemon (the SDK on its socket:
     the PNG is sent as base64, decoded by Pillow in the daemon, evaluated by the worker)
     ÷ the same in one process (Pillow decode, mtmd_tokenize, mtmd_helper_eval_chunks,
     first token); alternating pairs, a new image each time so no cache helps either
     side                                                              target <= 1.05
  2. image encode time per image: the projector's pass alone (mtmd_encode_chunk), and the
     daemon's Pillow decode + normalise (llmtui.media.decode) of a 1024x768 JPEG

Run: `python bench/images.py` (the test model with the tests' tiny projector, so the
encoder costs almost nothing), or with a real pair for real encode times:
`python bench/images.py --model SmolVLM-256M-Instruct-Q8_0.gguf --mmproj
mmproj-SmolVLM-256M-Instruct-Q8_0.gguf`.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402
from tests.projector import write_projector  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]
QUESTION = "What is in this picture?"
NAME = "bench-vision:latest"


def picture(seed: int, size: tuple[int, int] = (320, 240), fmt: str = "PNG") -> bytes:
    """A different picture each time (random shapes), so no cache can serve it."""
    from PIL import Image, ImageDraw

    r = random.Random(seed)
    img = Image.new("RGB", size, tuple(r.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = r.randrange(size[0]), r.randrange(size[1])
        draw.ellipse([x, y, x + r.randrange(10, 120), y + r.randrange(10, 120)],
                     fill=tuple(r.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def setup(model: Path, mmproj: Path, threads: int) -> dict[str, str]:
    home = Path(tempfile.mkdtemp(prefix="llmtui-bench-images-")) / "h"
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "600"}
    subprocess.run([*LLM, "import", str(model), "--mmproj", str(mmproj), "--name", NAME,
                    "--link"], env=env, check=True, capture_output=True)
    subprocess.run([*LLM, "config", "set", "threads", str(threads)], env=env, check=True,
                   capture_output=True)
    os.environ.update(env)
    return env


class Raw:
    """llama-cpp-python with mtmd in this process: what the daemon is measured against."""

    def __init__(self, model: Path, mmproj: Path, threads: int, n_ctx: int) -> None:
        import llama_cpp
        from llama_cpp import mtmd_cpp

        self.lib, self.m = llama_cpp, mtmd_cpp
        self.llm = llama_cpp.Llama(model_path=str(model), n_ctx=n_ctx, n_threads=threads,
                                   n_threads_batch=threads, n_batch=512, verbose=False)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.print_timings = False
        self.ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), self.llm.model, params)
        if not self.ctx:
            raise SystemExit(f"mtmd could not load {mmproj}")
        template = (self.llm.metadata or {}).get("tokenizer.chat_template")
        self.prompt = self._prompt(template)

    def _prompt(self, template: str | None) -> str:
        marker = self.m.mtmd_default_marker().decode()
        if not template:
            return f"{marker}\n{QUESTION}\n"
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(
            messages=[{"role": "user", "content": f"{marker}\n{QUESTION}"}],
            add_generation_prompt=True, bos_token="", eos_token="")

    def chunks(self, png: bytes) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.open(io.BytesIO(png)).convert("RGB")
        raw = img.tobytes()
        bitmap = self.m.mtmd_bitmap_init(img.width, img.height,
                                         (ctypes.c_uint8 * len(raw)).from_buffer_copy(raw))
        text = self.prompt.encode()
        inp = self.m.mtmd_input_text()
        inp.text, inp.text_len, inp.add_special, inp.parse_special = text, len(text), True, True
        chunks = self.m.mtmd_input_chunks_init()
        rc = self.m.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp),
                                  (self.m.mtmd_bitmap_p_ctypes * 1)(bitmap), 1)
        if rc != 0:
            raise SystemExit(f"mtmd_tokenize failed ({rc})")
        return chunks, bitmap

    def ttft(self, png: bytes) -> float:
        start = time.perf_counter()
        chunks, bitmap = self.chunks(png)
        try:
            self.llm._ctx.kv_cache_clear()
            n_past = self.lib.llama_pos(0)
            rc = self.m.mtmd_helper_eval_chunks(self.ctx, self.llm._ctx.ctx, chunks, 0, 0, 512,
                                                True, ctypes.byref(n_past))
            if rc != 0:
                raise SystemExit(f"mtmd_helper_eval_chunks failed ({rc})")
            logits = self.lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
            n_vocab = self.llm.n_vocab()
            token = max(range(n_vocab), key=lambda i: logits[i])
            self.llm.detokenize([token])
            return time.perf_counter() - start
        finally:
            self.m.mtmd_input_chunks_free(chunks)
            self.m.mtmd_bitmap_free(bitmap)

    def encode_seconds(self, png: bytes) -> float:
        chunks, bitmap = self.chunks(png)
        try:
            for i in range(self.m.mtmd_input_chunks_size(chunks)):
                chunk = self.m.mtmd_input_chunks_get(chunks, i)
                if self.m.mtmd_input_chunk_get_type(chunk) == \
                        self.m.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    start = time.perf_counter()
                    if self.m.mtmd_encode_chunk(self.ctx, chunk) != 0:
                        raise SystemExit("mtmd_encode_chunk failed")
                    return time.perf_counter() - start
            raise SystemExit("no image chunk")
        finally:
            self.m.mtmd_input_chunks_free(chunks)
            self.m.mtmd_bitmap_free(bitmap)

    def close(self) -> None:
        self.m.mtmd_free(self.ctx)
        self.llm.close()


def daemon_ttft(client: Any, png: bytes, n_ctx: int) -> float:
    start = time.perf_counter()
    stream = client.chat(NAME, [{"role": "user", "content": QUESTION, "images": [png]}],
                         options={"num_predict": 1, "temperature": 0, "num_ctx": n_ctx},
                         keep_alive=-1)
    try:
        for _ in stream:
            return time.perf_counter() - start
    finally:
        stream.close()
    raise SystemExit("the daemon sent nothing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--model", type=Path, help="a text GGUF (default: the SmolLM2 test model)")
    ap.add_argument("--mmproj", type=Path, help="its projector (default: the tests' tiny one)")
    args = ap.parse_args()

    cache = fetch_models.cache_dir()
    model = args.model or fetch_models.fetch("smollm2-135m.gguf",
                                             fetch_models.MODELS["smollm2-135m.gguf"], cache)
    mmproj = args.mmproj or write_projector(Path(tempfile.mkdtemp()) / "mmproj.gguf")
    env = setup(model, mmproj, args.threads)

    from llmtui import Client
    from llmtui.config import Settings
    from llmtui.media import decode

    print(f"model {model.name}, projector {mmproj.name}, {args.threads} threads, "
          f"ctx {args.ctx}, {args.pairs} pairs")
    raw = Raw(model, mmproj, args.threads, args.ctx)
    daemon: list[float] = []
    inproc: list[float] = []
    with Client(settings=Settings.load(env)) as client:
        daemon_ttft(client, picture(-1), args.ctx)  # load the model; first-use costs
        raw.ttft(picture(-2))
        for i in range(args.pairs):
            if i % 2:
                inproc.append(raw.ttft(picture(2 * i)))
                daemon.append(daemon_ttft(client, picture(2 * i + 1), args.ctx))
            else:
                daemon.append(daemon_ttft(client, picture(2 * i + 1), args.ctx))
                inproc.append(raw.ttft(picture(2 * i)))
    d, r = statistics.median(daemon), statistics.median(inproc)
    print(f"1. one-image chat, time to first token: daemon {d * 1000:.0f} ms, in-process "
          f"{r * 1000:.0f} ms, ratio {d / r:.3f} (target <= 1.05)")

    encodes = [raw.encode_seconds(picture(1000 + i)) for i in range(max(3, args.pairs))]
    jpeg = picture(7, (1024, 768), "JPEG")
    t = time.perf_counter()
    for _ in range(5):
        decode(jpeg)
    pillow = (time.perf_counter() - t) / 5
    print(f"2. image encode per image: projector {statistics.median(encodes) * 1000:.1f} ms "
          f"(mtmd_encode_chunk); daemon-side decode of a 1024x768 JPEG "
          f"{pillow * 1000:.1f} ms (Pillow, llmtui.media.decode)")
    raw.close()
    subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
