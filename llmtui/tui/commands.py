"""The command palette (Ctrl+P): every action, every theme, every installed model."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ChatCommands(Provider):
    """The command palette: every action, every theme, every installed model."""

    def _commands(self) -> list[tuple[str, Any, str]]:
        app: Any = self.app  # the ChatApp
        out: list[tuple[str, Any, str]] = [
            (desc, partial(app.run_action, action), f"key: {key}")
            for action, desc, key, _ in app.binding_rows()]
        for theme in sorted(app.available_themes):
            out.append((f"Theme: {theme}", partial(app.set_theme, theme),
                        "switch theme (remembered)"))
        for name in app.model_names:
            out.append((f"Use model: {name}", partial(app.use_model, name),
                        "switch this conversation's model"))
        out.append(("Export conversation as JSON", partial(app.run_action, "export('json')"),
                    "write a .json file to the current folder"))
        out.append(("Import conversation from JSON", partial(app.run_action, "import_json"),
                    "read an exported .json file"))
        return out

    async def discover(self) -> Hits:
        for text, cb, help_ in self._commands():
            yield DiscoveryHit(text, cb, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, cb, help_ in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), cb, help=help_)
