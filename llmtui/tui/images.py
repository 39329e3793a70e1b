"""Images in the chat: `/image PATH` or a pasted path attaches one; a preview shows in the
conversation, drawn with kitty graphics or sixel where the terminal can, half-blocks
elsewhere (textual-image picks)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from textual.widget import Widget
from textual.widgets import Label

#: Preview size in cells: a thumbnail, the conversation stays readable.
PREVIEW_WIDTH, PREVIEW_HEIGHT = 24, 8


def prepare_terminal() -> None:
    """Ask the terminal which graphics it draws. textual-image does this on import, and it
    must happen before Textual takes the terminal over: call it before App.run()."""
    try:
        import textual_image.widget  # noqa: F401
    except Exception:  # not installed, or a terminal that does not answer: no previews
        return


def _image_path(word: str) -> Path | None:
    if word.startswith("file://"):
        word = unquote(urlsplit(word).path)
    path = Path(word).expanduser()
    try:
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    from llmtui.media import detect

    return path if detect(head) else None


def pasted_images(text: str) -> list[Path] | None:
    """The image files when the whole text is one or more paths to them (a file dropped
    or pasted into the terminal: quoted, escaped or as file:// URLs), else None."""
    stripped = text.strip()
    if not stripped or "\n" in stripped or len(stripped) > 4096:
        return None
    try:
        words = shlex.split(stripped)
    except ValueError:
        return None
    paths = [_image_path(w) for w in words]
    if not words or any(p is None for p in paths):
        return None
    return [p for p in paths if p is not None]


def preview(path: Path, name: str) -> Widget:
    """A thumbnail of the image, or a one-line stand-in where it cannot be drawn."""
    try:
        from textual_image.widget import Image
    except Exception:
        return Label(f"🖼 {name}", classes="stats")
    widget: Widget = Image(str(path), classes="image-preview")
    widget.styles.width = PREVIEW_WIDTH
    widget.styles.height = PREVIEW_HEIGHT
    widget.tooltip = name
    return widget


def image_view(app: Any, att: dict[str, Any]) -> Widget:
    """An image attachment's preview, from the history's images folder."""
    from llmtui.errors import LlmtuiError
    from llmtui.history import image_file

    name = str(att.get("name", "image"))
    try:
        path: Path | None = image_file(app.history.images_dir, att)
    except LlmtuiError:
        path = None
    if path is None or not path.is_file():
        return Label(f"🖼 {name} (missing)", classes="stats")
    return preview(path, name)
