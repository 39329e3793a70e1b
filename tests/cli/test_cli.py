"""CLI smoke tests: --help works, start-up stays light, catalog reports fit."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_help_smoke(llm) -> None:
    res = llm("--help")
    assert res.returncode == 0
    for cmd in ["pull", "list", "show", "rm", "cp", "import", "catalog", "search", "config"]:
        assert cmd in res.stdout
    assert llm("--version").stdout.startswith("llmtui ")
    assert llm("pull", "--help").returncode == 0


def test_help_imports_no_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from llmtui.cli.app import app, main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('llama_cpp', 'lancedb', 'textual', 'numpy', 'gguf', 'httpx',"
        " 'onnxruntime', 'openvino', 'faster_whisper') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_catalog(llm, home) -> None:
    data = json.loads(llm("catalog", "--json").stdout)
    names = {m["name"] for m in data["models"]}
    for expected in ["smollm2:135m", "gemma3:270m", "llama3.2:1b", "llama3.2:3b", "llama3.1:8b",
                     "mistral:7b", "gemma2:2b", "gemma2:9b", "qwen2.5:0.5b", "qwen2.5:7b",
                     "qwen2.5-coder:7b", "phi3:mini", "deepseek-coder:6.7b", "deepseek-r1:1.5b",
                     "falcon3:1b", "codellama:7b", "starcoder2:3b", "nomic-embed-text:v1.5",
                     "mxbai-embed-large:335m", "all-minilm:l6-v2", "whisper:tiny.en",
                     "whisper:small"]:
        assert expected in names, expected
    assert data["ram_total"] > 0
    assert {m["fit"] for m in data["models"]} <= {"fits", "tight", "too-big"}
    assert data["recommended"] in names
    plain = llm("search", "coder").stdout
    assert "qwen2.5-coder:7b" in plain and "llama3.1:8b" not in plain


def test_fit_markers() -> None:
    from llmtui.models.catalog import fit

    gb = 10**9
    assert fit(2 * gb, 16 * gb) == "fits"
    assert fit(10 * gb, 16 * gb) == "tight"
    assert fit(15 * gb, 16 * gb) == "too-big"


def test_headless_core_never_imports_textual() -> None:
    code = (
        "import sys\n"
        "import llmtui.engine.manager, llmtui.engine.worker, llmtui.engine.process\n"
        "import llmtui.daemon.server, llmtui.daemon.client, llmtui.daemon.lifecycle\n"
        "import llmtui.models.store, llmtui.models.pull, llmtui.models.catalog\n"
        "import llmtui.api.app, llmtui.api.ollama, llmtui.backends.llamacpp\n"
        "import llmtui.cli.app, llmtui.cli.gen_cmd, llmtui.cli.mapreduce, llmtui.cli.repl\n"
        "import llmtui.history, llmtui.cli.history_cmd, llmtui.cli.chat_cmd\n"
        "import llmtui.api.openai, llmtui.api.extras, llmtui.api.graphql\n"
        "import llmtui.tools, llmtui.tools.builtin, llmtui.tools.mcp, llmtui.cli.toolrun\n"
        "import llmtui.cli.mcp_cmd, llmtui.api.anthropic\n"
        "assert 'textual' not in sys.modules, 'textual imported by the headless core'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
