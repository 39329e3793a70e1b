"""The store through the real CLI: import, link, copy, remove, listing and moving it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llmtui.errors import ExitCode
from tests.conftest import one_line_error, store_of

SMOLLM_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_import_copy_and_link(llm, home, smollm: Path, tmp_path: Path) -> None:
    res = llm("import", str(smollm), "--name", "copied:latest")
    assert res.returncode == 0, res.stderr
    local = tmp_path / "elsewhere.gguf"
    shutil.copy(smollm, local)
    res = llm("import", str(local), "--name", "linked")
    assert res.returncode == 0, res.stderr
    res = llm("import", str(local), "--name", "inplace:1", "--link")
    assert res.returncode == 0, res.stderr
    listed = {m["name"]: m for m in json.loads(llm("list", "--json").stdout)}
    assert set(listed) == {"copied:latest", "linked:latest", "inplace:1"}
    assert listed["inplace:1"]["location"] == str(local.resolve())
    assert listed["copied:latest"]["location"].endswith(f"sha256-{SMOLLM_SHA}")
    plain = llm("list").stdout.splitlines()
    assert plain[0].split("\t") == ["name", "size", "quant", "format", "family", "input",
                                     "modified", "location"]
    row = next(r for r in plain if r.startswith("inplace:1")).split("\t")
    assert row[-1] == str(local.resolve())
    # Two copies of the same bytes share one blob; the linked one has none.
    store = store_of(home)
    assert [p.name for p in store.blobs.iterdir()] == [f"sha256-{SMOLLM_SHA}"]


def test_rm_keeps_blob_another_tag_uses(llm, home, smollm: Path) -> None:
    assert llm("import", str(smollm), "--name", "a:1").returncode == 0
    assert llm("cp", "a:1", "b:2").returncode == 0
    store = store_of(home)
    blob = store.blob_path(SMOLLM_SHA)
    res = llm("rm", "a:1")
    assert res.returncode == 0, res.stderr
    assert blob.exists(), "b:2 still uses the blob"
    assert llm("show", "b:2", "--json").returncode == 0
    assert llm("rm", "b:2").returncode == 0
    assert not blob.exists()
    assert store.models() == []


def test_rm_unknown_removes_nothing(llm, home, smollm: Path) -> None:
    assert llm("import", str(smollm), "--name", "a:1").returncode == 0
    res = llm("rm", "a:1", "nope:1")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    one_line_error(res.stderr)
    assert [m.name for m in store_of(home).models()] == ["a:1"]


def test_rm_linked_keeps_users_file(llm, home, smollm: Path, tmp_path: Path) -> None:
    local = tmp_path / "mine.gguf"
    shutil.copy(smollm, local)
    assert llm("import", str(local), "--name", "mine", "--link").returncode == 0
    assert llm("rm", "mine").returncode == 0
    assert local.exists()


def test_linked_file_moved_is_clear_error(llm, home, smollm: Path, tmp_path: Path) -> None:
    local = tmp_path / "mine.gguf"
    shutil.copy(smollm, local)
    assert llm("import", str(local), "--name", "mine", "--link").returncode == 0
    local.rename(tmp_path / "moved.gguf")
    res = llm("show", "mine")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "missing" in one_line_error(res.stderr)


def test_show(llm, home, smollm: Path) -> None:
    assert llm("import", str(smollm), "--name", "s:1").returncode == 0
    data = json.loads(llm("show", "s:1", "--json").stdout)
    assert data["architecture"] == "llama"
    assert data["quantization"] == "Q4_1"
    assert data["context_length"] == 8192
    assert data["chat_template"] is True
    assert data["license"] == "apache-2.0"
    assert data["parameters"] > 100_000_000
    tmpl = llm("show", "s:1", "--template")
    assert tmpl.stdout.startswith("{% for message in messages %}")
    text = llm("show", "s:1").stdout
    assert "quantization\tQ4_1" in text


def test_show_missing_and_invalid(llm, home) -> None:
    res = llm("show", "nothing:here")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND
    assert "llm pull" in one_line_error(res.stderr)
    res = llm("show", "../../x")
    assert res.returncode == ExitCode.INVALID_INPUT
    res = llm("cp", "nothing:1", "x:2")
    assert res.returncode == ExitCode.MODEL_NOT_FOUND


def test_models_dir_moves_with_env_and_config(llm, home, smollm: Path, tmp_path: Path) -> None:
    moved = tmp_path / "big-disk"
    res = llm("import", str(smollm), "--name", "m:1", env={"LLMTUI_MODELS": str(moved)})
    assert res.returncode == 0, res.stderr
    assert (moved / "manifests" / "m" / "1.json").exists()
    assert llm("list", "--json").stdout.strip() == "[]"  # the default store is elsewhere
    assert llm("config", "set", "models_dir", str(moved)).returncode == 0
    assert [m["name"] for m in json.loads(llm("list", "--json").stdout)] == ["m:1"]
    assert llm("config", "get", "models_dir").stdout.strip() == str(moved)


def test_manifest_digest_cannot_escape_store(home, smollm: Path) -> None:
    """A tampered manifest with a traversal digest is refused, not followed."""
    from llmtui.cli.app import main  # noqa: F401  (imports must work in-process)
    from llmtui.errors import BadModelFile

    store = store_of(home)
    store.ensure()
    path = store.manifests / "evil" / "1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "name": "evil:1", "format": "gguf", "source": "x", "created": "now",
        "layers": [{"digest": "../../../../etc/passwd", "size": 1, "filename": "x"}],
    }))
    try:
        store.get("evil:1")
    except BadModelFile as exc:
        assert "invalid" in str(exc)
    else:
        raise AssertionError("tampered manifest accepted")
    assert store.models() == []  # a broken manifest does not break the listing
