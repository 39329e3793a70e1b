"""A real `llm serve` for the JavaScript and Rust SDK tests (sdk/js, sdk/rust).

    python tests/sdk_daemon.py

makes a temporary LLMTUI_HOME with the real tiny models installed (SmolLM2-135M for chat,
all-MiniLM-L6-v2 for embeddings and RAG), starts the daemon on a free 127.0.0.1 port with
an API key, and prints one JSON line: {"url", "socket", "api_key", "home", "models"}.
It stops the daemon and removes the home when its stdin closes, so a test that dies
takes its daemon with it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import fetch_models  # noqa: E402

LLM = [sys.executable, "-m", "llmtui"]
API_KEY = "sdk-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def minilm_gguf(cache: Path) -> Path:
    """The embedder converted once and kept beside the other test models."""
    out = cache / "all-MiniLM-L6-v2.F16.gguf"
    if not out.exists():
        from llmtui.models.convert import sentence_transformer_to_gguf

        tmp = out.with_suffix(".tmp")
        sentence_transformer_to_gguf(cache / "all-minilm-l6-v2.zip", tmp,
                                     name="all-MiniLM-L6-v2")
        tmp.replace(out)
    return out


def main() -> None:
    cache = fetch_models.cache_dir()
    for name, spec in fetch_models.MODELS.items():
        fetch_models.fetch(name, spec, cache)
    home = Path(tempfile.mkdtemp(prefix="llmtui-sdk-")) / "home"
    env = {**os.environ, "LLMTUI_HOME": str(home), "LLMTUI_IDLE_TIMEOUT": "600"}
    env.pop("LLMTUI_MODELS", None)
    env.pop("LLMTUI_NO_DAEMON", None)
    for path, name in ((cache / "smollm2-135m.gguf", "smollm2:135m"),
                       (minilm_gguf(cache), "all-minilm:l6-v2")):
        subprocess.run([*LLM, "import", str(path), "--name", name, "--link"], env=env,
                       check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = subprocess.Popen([*LLM, "serve", "--port", str(port), "--api-key", API_KEY],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    import httpx

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            sys.exit("llm serve failed: " + (proc.stderr.read().decode() if proc.stderr else ""))
        try:
            httpx.get(url + "/", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit("llm serve did not start")
            time.sleep(0.1)
    print(json.dumps({"url": url, "socket": str(home / "run" / "llmtui.sock"),
                      "api_key": API_KEY, "home": str(home),
                      "models": ["smollm2:135m", "all-minilm:l6-v2"]}), flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or dies)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run([*LLM, "daemon", "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
