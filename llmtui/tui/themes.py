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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"theme {path.name}: cannot read it: {exc}") from None
    return theme_from_dict(data, path.name)


def theme_from_dict(data: dict[str, Any], where: str) -> Any:
    """A Textual Theme from a theme file's fields, checked (``where`` names the source)."""
    from textual.color import Color, ColorParseError
    from textual.theme import Theme

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"theme {where}: 'name' is required")
    if "primary" not in data:
        raise ConfigError(f"theme {where}: 'primary' is required")
    unknown = set(data) - {*FIELDS, "name", "dark"}
    if unknown:
        raise ConfigError(f"theme {where}: unknown keys {', '.join(sorted(unknown))}")
    colours: dict[str, Any] = {}
    for key in FIELDS:
        if key in data:
            try:
                Color.parse(str(data[key]))
            except ColorParseError:
                raise ConfigError(f"theme {where}: '{key}' is not a colour: "
                                  f"{data[key]!r}") from None
            colours[key] = str(data[key])
    return Theme(name=name, dark=bool(data.get("dark", True)), **colours)


def theme_of(name: str, dist: str, obj: Any) -> Any:
    """A theme plugin's object as a Theme: a Theme, a dict of theme fields, a path to a
    theme file, or a function returning one of those. Raises ConfigError."""
    from textual.theme import Theme

    where = f"{name} (plugin {dist})"
    value = obj() if callable(obj) and not isinstance(obj, Theme) else obj
    if isinstance(value, Theme):
        return value
    if isinstance(value, dict):
        return theme_from_dict(value, where)
    if isinstance(value, str | Path):
        return parse_theme(Path(value))
    raise ConfigError(f"theme {where}: not a Theme, a dict or a theme file")


def plugin_themes() -> tuple[list[Any], list[str]]:
    """Themes from the llmtui.themes plugin group; failures are reported once per install."""
    from llmtui import plugins

    themes: list[Any] = []
    loaded, failed = plugins.load_all("llmtui.themes")
    for plugin, obj in loaded:
        try:
            themes.append(theme_of(plugin.name, plugin.dist, obj))
        except ConfigError as exc:
            failed.append((plugin, str(exc)))
        except Exception as exc:
            failed.append((plugin, plugins.error_text(exc)))
    problems = [line.removeprefix("llm: warning: ")
                for line in plugins.warn_once(failed, write=lambda _line: None)]
    return themes, problems


def load_themes(settings: Any) -> tuple[list[Any], list[str]]:
    """(themes, problems): built-in ones first, then plugins', then the user's (which may
    override both)."""
    themes: dict[str, Any] = {}
    problems: list[str] = []
    for folder in (builtin_dir(), None, user_dir(settings)):
        if folder is None:
            found, trouble = plugin_themes()
            themes.update((t.name, t) for t in found)
            problems += trouble
            continue
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
