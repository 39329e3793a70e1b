"""Images from the command line: --image (repeatable, '-' for stdin), an image piped into
`llm run`, `llm describe FILE...`; and the errors a user can make."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llmtui.errors import ExitCode
from tests.conftest import LLM, ROOT, Runner, one_line_error
from tests.projector import make_png
from tests.vision.conftest import SMOL, VIS

N = ["-n", "4", "--temperature", "0", "--seed", "1"]


def run_bytes(home: Path, *args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """`llm ...` with binary stdin (the Runner fixture sends text)."""
    env = {**os.environ, "LLMTUI_HOME": str(home), "NO_COLOR": "1",
           "LLMTUI_IDLE_TIMEOUT": "300"}
    return subprocess.run([*LLM, *args], input=data, capture_output=True, timeout=300,
                          env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    out = {}
    for name, color, pattern in (("red.png", (200, 30, 30), 0),
                                 ("green.png", (10, 200, 30), 3)):
        out[name] = folder / name
        make_png(out[name], color=color, pattern=pattern)
    (folder / "notes.txt").write_text("not a picture")
    out["notes.txt"] = folder / "notes.txt"
    return out


def test_run_with_image_files(vllm: Runner, pictures: dict[str, Path]) -> None:
    res = vllm("run", VIS, "what is this?", "--image", str(pictures["red.png"]), *N,
               timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    two = vllm("run", VIS, "compare them", "-i", str(pictures["red.png"]), "-i",
               str(pictures["green.png"]), *N, "--json", timeout=300)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["stats"]["prompt_eval_count"] > 0


def test_image_from_stdin(vision_home: Path, pictures: dict[str, Path]) -> None:
    data = pictures["red.png"].read_bytes()
    piped = run_bytes(vision_home, "run", VIS, "describe", *N, data=data)
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout.strip()
    dash = run_bytes(vision_home, "run", VIS, "what is it?", "--image", "-", *N, data=data)
    assert dash.returncode == 0, dash.stderr.decode()
    alone = run_bytes(vision_home, "run", VIS, *N, data=data)  # no prompt: describe it
    assert alone.returncode == 0, alone.stderr.decode()


def test_describe_one_line_per_image(vllm: Runner, vision_home: Path,
                                     pictures: dict[str, Path]) -> None:
    files = [str(pictures["red.png"]), str(pictures["green.png"])]
    res = vllm("describe", *files, "-m", VIS, "-n", "12", "--temperature", "0",
               timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    assert [line.split("\t")[0] for line in lines] == files
    assert all("\n" not in line for line in lines)
    as_json = vllm("describe", files[0], "-m", VIS, "-n", "3", "--json", timeout=300)
    assert json.loads(as_json.stdout)["file"] == files[0]
    piped = run_bytes(vision_home, "describe", "-m", VIS, "-n", "3",
                      data=pictures["green.png"].read_bytes())
    assert piped.returncode == 0 and piped.stdout.decode().startswith("stdin\t")
    cmd = " ".join([*LLM, "describe", *files, *files, "-m", VIS, "-n", "3"]) + " | head -1"
    head = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "LLMTUI_HOME": str(vision_home)})
    assert head.returncode == 0 and len(head.stdout.splitlines()) == 1, head.stderr
    assert "Traceback" not in head.stderr


def test_vision_model_setting(vllm: Runner, pictures: dict[str, Path]) -> None:
    assert vllm("config", "set", "vision_model", VIS).returncode == 0
    try:
        res = vllm("describe", str(pictures["red.png"]), "-n", "3", timeout=300)
        assert res.returncode == 0, res.stderr
    finally:
        vllm("config", "unset", "vision_model")


def test_user_errors(vllm: Runner, vision_home: Path, pictures: dict[str, Path],
                     tmp_path: Path) -> None:
    cases = [
        (("run", VIS, "x", "--image", str(pictures["notes.txt"])), ExitCode.INVALID_INPUT,
         "notes.txt is not a PNG, JPEG, WebP or GIF image"),
        (("run", VIS, "x", "--image", str(tmp_path / "gone.png")), ExitCode.INVALID_INPUT,
         "no such image file"),
        (("run", SMOL, "x", "--image", str(pictures["red.png"])), ExitCode.INVALID_INPUT,
         "'smollm2:135m' cannot read images (it is not a vision model)"),
        (("describe", str(pictures["red.png"]), str(pictures["notes.txt"]), "-m", VIS),
         ExitCode.INVALID_INPUT, "notes.txt is not a PNG"),
        (("describe", str(pictures["red.png"])), ExitCode.INVALID_INPUT,
         "cannot read images"),  # the default model is a text model
        (("run", VIS, "x", "--image", "-", "--image", "-"), ExitCode.INVALID_INPUT,
         "--image - (stdin) can be given only once"),
    ]
    for args, code, message in cases:
        res = vllm(*args, timeout=300)
        assert res.returncode == code, (args, res.stderr)
        assert message in one_line_error(res.stderr), args
    empty = run_bytes(vision_home, "run", VIS, "x", "--image", "-", data=b"")
    assert empty.returncode == ExitCode.INVALID_INPUT
    assert "stdin is empty, not an image" in empty.stderr.decode()
    text = run_bytes(vision_home, "run", VIS, "x", "--image", "-", data=b"plain words")
    assert "stdin is not a PNG" in text.stderr.decode()


def test_images_change_the_reply(vllm: Runner, pictures: dict[str, Path]) -> None:
    def reply(name: str) -> dict:
        res = vllm("run", VIS, "What is this?", "--image", str(pictures[name]), "-n", "12",
                   "--temperature", "0", "--seed", "1", "--json", timeout=300)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)
    red, green = reply("red.png"), reply("green.png")
    assert red["text"] != green["text"]
    plain = vllm("run", VIS, "What is this?", "-n", "1", "--json", timeout=300)
    assert red["stats"]["prompt_eval_count"] - json.loads(plain.stdout)["stats"][
        "prompt_eval_count"] >= 16
