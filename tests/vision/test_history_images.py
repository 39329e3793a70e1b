"""Images in the conversation history: kept by hash beside history.db (not in SQLite),
sent to the model as base64, exported inline and imported back, removed with the last
conversation that uses them."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from llmtui.errors import InvalidInput
from llmtui.history import History, Message
from tests.projector import make_png

RED = make_png(color=(200, 30, 30))
GREEN = make_png(color=(10, 200, 30), pattern=2)


@pytest.fixture()
def history(tmp_path: Path) -> History:
    return History(tmp_path / "data" / "history.db")


def test_images_are_files_by_hash(history: History) -> None:
    a = history.add_image(RED, "red.png")
    again = history.add_image(RED, "same-picture.png")
    assert a["sha256"] == again["sha256"] and a["format"] == "png"
    files = list(history.images_dir.iterdir())
    assert [f.name for f in files] == [f"{a['sha256']}.png"]
    assert history.image_bytes(a) == RED
    conv = history.create(model="smolvision:test")
    history.add(conv.id, Message(role="user", content="What is this?", attachments=[a]))
    row = sqlite3.connect(history.path).execute("SELECT attachments FROM messages").fetchone()
    assert len(row[0]) < 300  # a reference, not the picture
    with pytest.raises(InvalidInput, match=r"notes\.txt is not a PNG"):
        history.add_image(b"plain text", "notes.txt")


def test_for_model_sends_images_as_base64(history: History) -> None:
    att = history.add_image(GREEN, "g.png")
    text = {"name": "notes.txt", "text": "hello"}
    message = Message(role="user", content="Look", attachments=[att, text])
    sent = message.for_model(history.image_bytes)
    assert sent["images"] == [base64.b64encode(GREEN).decode()]
    assert '<file name="notes.txt">' in sent["content"]
    assert "images" not in message.for_model()  # a caller that cannot read images
    assert message.images == [att]


def test_export_import_and_markdown(history: History, tmp_path: Path) -> None:
    conv = history.create(title="Pictures", model="smolvision:test")
    att = history.add_image(RED, "red.png")
    history.add(conv.id, Message(role="user", content="What is this?", attachments=[att]))
    history.add(conv.id, Message(role="assistant", content="A red square."))
    full = history.get(conv.id)
    exported = history.export_json(full)
    inline = exported["messages"][0]["attachments"][0]
    assert base64.b64decode(inline["data"]) == RED
    markdown = full.to_markdown(history.images_dir)
    assert f"![red.png]({history.images_dir / (att['sha256'] + '.png')})" in markdown

    other = History(tmp_path / "elsewhere" / "history.db")  # another machine
    imported = other.import_json(json.loads(json.dumps(exported)))
    got = imported.messages[0].attachments[0]
    assert "data" not in got and other.image_bytes(got) == RED
    with pytest.raises(InvalidInput, match="has no data"):
        other.import_json({**exported, "messages": [{
            "role": "user", "content": "x", "attachments": [{"kind": "image", "name": "a"}]}]})


def test_deleting_the_last_user_of_an_image_removes_it(history: History) -> None:
    att = history.add_image(RED, "red.png")
    one = history.create()
    two = history.create()
    for conv in (one, two):
        history.add(conv.id, Message(role="user", content="x", attachments=[att]))
    history.delete(one.id)
    assert history.image_bytes(att) == RED
    history.delete(two.id)
    assert list(history.images_dir.iterdir()) == []
    with pytest.raises(InvalidInput, match="missing from the data folder"):
        history.image_bytes(att)


def test_malformed_attachments(history: History) -> None:
    with pytest.raises(InvalidInput, match="malformed image attachment"):
        history.image_bytes({"kind": "image", "sha256": "../../etc/passwd", "format": "png"})


def test_history_cli_export(tmp_path: Path, llm, home: Path) -> None:
    h = History.default()
    conv = h.create(title="Pictures")
    h.add(conv.id, Message(role="user", content="What is this?",
                           attachments=[h.add_image(RED, "red.png")]))
    shown = llm("history", "show", "1")
    assert shown.returncode == 0 and "![red.png](" in shown.stdout
    out = tmp_path / "c.json"
    assert llm("history", "export", "1", "-f", "json", "-o", str(out)).returncode == 0
    data = json.loads(out.read_text())
    assert base64.b64decode(data["messages"][0]["attachments"][0]["data"]) == RED
    assert llm("history", "rm", "1").returncode == 0
    res = llm("history", "import", str(out))
    assert res.returncode == 0, res.stderr
    again = History.default()
    assert again.image_bytes(again.get(again.resolve("1")).messages[0].attachments[0]) == RED
