"""`llm plugins`: what is installed in each plugin group, and whether it loads; and the
loading of command plugins into the root app (a broken one is reported, never fatal)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from llmtui.cli.output import print_json, print_table

_ADDED: set[int] = set()  # apps that already have their plugin commands
#: Why a command plugin was left out, from the last add_plugin_commands (for the listing).
_LEFT_OUT: dict[Any, str] = {}


def _check_command(name: str, obj: Any) -> str | None:
    """Why this object cannot be a command, or None. Typer only complains about bad
    parameters when it builds the command, which would break every `llm` run: so the
    plugin's command is built here first, on its own."""
    probe = typer.Typer(add_completion=False)
    if isinstance(obj, typer.Typer):
        probe.add_typer(obj, name=name)
    elif callable(obj):
        probe.command(name)(obj)
    else:
        return "not a Typer app or a function"
    try:
        typer.main.get_command(probe)
    except Exception as exc:
        from llmtui.plugins import error_text

        return error_text(exc)
    return None


def add_plugin_commands(app: typer.Typer) -> None:
    """Add the llmtui.commands plugins to the root app, once; failures are reported once."""
    if id(app) in _ADDED:
        return
    _ADDED.add(id(app))
    from llmtui import plugins

    if not plugins.discover("llmtui.commands"):
        return
    from llmtui.cli.router import command_names

    taken = command_names(app)
    loaded, failed = plugins.load_all("llmtui.commands")
    for plugin, obj in loaded:
        why = (f"the name clashes with the command '{plugin.name}'"
               if plugin.name in taken else _check_command(plugin.name, obj))
        if why:
            failed.append((plugin, why))
            continue
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=plugin.name)
        else:
            app.command(plugin.name)(obj)
        taken.add(plugin.name)
    _LEFT_OUT.update(failed)
    plugins.warn_once(failed)


def plugin_rows() -> list[dict[str, Any]]:
    """Every plugin of every group with its state: loads, or why not."""
    from llmtui import plugins

    rows = []
    for group in plugins.GROUPS:
        loaded, failed = plugins.load_all(group)
        state: dict[Any, str] = {p: reason for p, reason in failed}
        for plugin, obj in loaded:
            if group == "llmtui.commands":
                why = _LEFT_OUT.get(plugin) or _check_command(plugin.name, obj)
                if why:
                    state[plugin] = why
            elif group == "llmtui.themes":
                why = _theme_problem(plugin, obj)
                if why:
                    state[plugin] = why
            elif group == "llmtui.tools":
                try:
                    plugins.as_tool(plugin.name, obj)
                except (TypeError, ValueError, NameError) as exc:
                    state[plugin] = plugins.error_text(exc)
        for plugin in plugins.discover(group):
            reason = state.get(plugin)
            rows.append({"kind": plugin.kind, "name": plugin.name, "group": plugin.group,
                         "target": plugin.value, "package": plugin.dist,
                         "version": plugin.version, "builtin": plugin.builtin,
                         "state": "ok" if reason is None else "failed", "error": reason})
    return rows


def _theme_problem(plugin: Any, obj: Any) -> str | None:
    """Why a theme plugin gives no theme; not checked without the tui extra (Textual)."""
    from llmtui.errors import ConfigError
    from llmtui.plugins import error_text

    try:
        from llmtui.tui.themes import theme_of

        theme_of(plugin.name, plugin.dist, obj)
    except ImportError:
        return None
    except ConfigError as exc:
        return str(exc)
    except Exception as exc:
        return error_text(exc)
    return None


def list_plugins(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    all_: bool = typer.Option(False, "--all", "-a", help="Include llmtui's own (built-in)."),
) -> None:
    """Installed plugins (backends, commands, RAG readers, themes, tools) and their state."""
    from llmtui import plugins

    plugins.discover(check=True)
    rows = [r for r in plugin_rows() if all_ or not r["builtin"]]
    if json_out:
        print_json(rows)
        return
    if not rows:
        sys.stderr.write("no plugins installed (see docs/plugins.md; --all shows the "
                         "built-in ones)\n")
        return
    print_table(None, ["kind", "name", "package", "state"],
                [[r["kind"], r["name"], f"{r['package']} {r['version']}".strip(),
                  r["state"] if r["error"] is None else f"failed: {r['error']}"]
                 for r in rows])


def register(app: typer.Typer) -> None:
    app.command("plugins")(list_plugins)
