"""homebrew/llmtui.rb: Ruby syntax (`ruby -c`), and its `test do` block run for real
against this checkout's `llm` through a stand-in for Homebrew's Formula DSL
(tests/packaging/brew_stub.rb); what `install` copies exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORMULA = ROOT / "homebrew" / "llmtui.rb"


def ruby() -> str:
    found = shutil.which("ruby")
    if found is None:
        pytest.fail("ruby is missing: `make sysdeps` installs it")
    return found


def test_formula_syntax() -> None:
    res = subprocess.run([ruby(), "-c", str(FORMULA)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "Syntax OK" in res.stdout, res.stderr


def test_formula_test_block_runs(home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LLMTUI_IDLE_TIMEOUT": "60"}
    env.pop("LLMTUI_HOME", None)  # the test block sets its own (testpath/home)
    res = subprocess.run([ruby(), str(ROOT / "tests/packaging/brew_stub.rb"), str(FORMULA),
                          str(Path(sys.executable).parent), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["includes_virtualenv"] and {"install"} <= set(info["methods"])
    assert info["license"] == ["Apache-2.0"]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] \
        == "Apache-2.0"
    assert {"python@3.12", "cmake"} <= set(info["depends_on"])
    assert info["service"] == [True]


def test_formula_installs_files_that_exist_and_extras_that_exist() -> None:
    text = FORMULA.read_text()
    installed = re.findall(r'\.install "([^"]+)"', text)
    assert {"completions/llm.bash", "completions/_llm", "completions/llm.fish",
            "man/llm.1"} <= set(installed)
    for path in installed:
        assert (ROOT / path).is_file(), path
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    wanted = re.search(r"buildpath\}\[([a-z,]+)\]", text)
    assert wanted and set(wanted.group(1).split(",")) <= set(extras)
    assert "virtualenv_install_with_resources" in text  # releases install from resources
