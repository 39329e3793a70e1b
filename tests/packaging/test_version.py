"""One version: the package, `llm --version`, the API, both SDKs and the CHANGELOG agree."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from importlib import metadata

import llmtui
from tests.conftest import LLM, ROOT


def test_one_version_everywhere(client) -> None:
    version = llmtui.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[.-]?(?:a|b|rc|dev)\d+)?", version)
    assert metadata.version("llmtui") == version  # the built metadata (hatch reads __init__)
    out = subprocess.run([*LLM, "--version"], capture_output=True, text=True, timeout=60)
    assert out.stdout == f"llmtui {version}\n"
    assert client.version() == version  # GET /api/version from a real daemon
    js = json.loads((ROOT / "sdk/js/package.json").read_text())
    assert js["version"] == version
    assert f'export const VERSION = "{version}";' in (ROOT / "sdk/js/src/index.ts").read_text()
    lock = json.loads((ROOT / "sdk/js/package-lock.json").read_text())
    assert lock["version"] == lock["packages"][""]["version"] == version
    cargo = tomllib.loads((ROOT / "sdk/rust/Cargo.toml").read_text())
    assert cargo["package"]["version"] == version
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"^## \[?(\d[^\]\s]*)", changelog, re.M)
    assert first and first.group(1) == version, "CHANGELOG.md's newest entry names the version"
