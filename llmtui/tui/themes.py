"""Themes: TOML files shipped in ``themes/`` plus the user's ``<config>/themes/*.toml``.

A theme file has ``name``, ``dark`` and colours: ``primary`` (required), ``secondary``,
``accent``, ``foreground``, ``background``, ``surface``, ``panel``, ``success``,
``warning``, ``error`` — the fields of Textual's Theme.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from llmtui.errors import ConfigError

FIELDS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
          "success", "warning", "error", "boost")
DEFAULT = "llmtui-dark"


def builtin_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    installed = here / "themes"  # the wheel puts the repo's themes/ here
    return installed if installed.is_dir() else here.parent / "themes"


def user_dir(settings: Any) -> Path:
    return Path(settings.paths.config_dir) / "themes"


def parse_theme(path: Path) -> Any:
    from textual.color import Color, ColorParseError
    from textual.theme import Theme

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"theme {path.name}: cannot read it: {exc}") from None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"theme {path.name}: 'name' is required")
    if "primary" not in data:
        raise ConfigError(f"theme {path.name}: 'primary' is required")
    unknown = set(data) - {*FIELDS, "name", "dark"}
    if unknown:
        raise ConfigError(f"theme {path.name}: unknown keys {', '.join(sorted(unknown))}")
    colours: dict[str, Any] = {}
    for key in FIELDS:
        if key in data:
            try:
                Color.parse(str(data[key]))
            except ColorParseError:
                raise ConfigError(f"theme {path.name}: '{key}' is not a colour: "
                                  f"{data[key]!r}") from None
            colours[key] = str(data[key])
    return Theme(name=name, dark=bool(data.get("dark", True)), **colours)


def load_themes(settings: Any) -> tuple[list[Any], list[str]]:
    """(themes, problems): built-in ones first, then the user's (which may override)."""
    themes: dict[str, Any] = {}
    problems: list[str] = []
    for folder in (builtin_dir(), user_dir(settings)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = parse_theme(path)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
