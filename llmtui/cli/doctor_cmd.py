"""``llm doctor``: one screen of what is installed, what is broken and how to fix each."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from llmtui.cli.output import print_json

if TYPE_CHECKING:
    from llmtui.doctor import Check

MARKS = {"ok": "✓", "info": "·", "missing": "-", "warn": "!", "broken": "✗"}


def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    fresh: bool = typer.Option(False, "--fresh", help="Measure the machine again "
                               "(otherwise a measurement from the last week is reused)."),
) -> None:
    """What is installed (extras, backends, GPU, audio, versions) and what is broken,
    with the one command that fixes each. Exits 1 when something is broken."""
    from llmtui import doctor as checks
    from llmtui.config import Settings
    from llmtui.errors import ConfigError
    from llmtui.machine import for_settings, probe
    from llmtui.paths import Paths

    try:
        settings = Settings.load()
    except ConfigError as exc:  # a broken config file is a finding, not a crash
        paths = Paths.from_env()
        machine = probe(paths.default_models_dir, cache_dir=paths.cache_dir, fresh=fresh)
        found = [checks.config_problem(exc), *checks.check_versions(), *checks.check_extras(),
                 *checks.check_machine(machine), *checks.check_llama(machine)]
    else:
        machine = for_settings(settings, fresh=fresh)
        found = checks.run_checks(settings, machine)
    broken = [c for c in found if c.status == "broken"]
    if json_out:
        print_json({"ok": not broken, "machine": machine.to_json(),
                    "checks": [c.to_json() for c in found]})
    else:
        _print(found)
    if broken:
        raise typer.Exit(1)


def _print(found: list[Check]) -> None:
    area = None
    out: list[str] = []
    for c in found:
        if c.area != area:
            area = c.area
            out.append(f"{area}")
        line = f"  {MARKS[c.status]} {c.name}: {c.detail}"
        if c.fix and c.status != "ok":
            line += f"\n      fix: {c.fix}"
        out.append(line)
    broken = sum(c.status == "broken" for c in found)
    warn = sum(c.status == "warn" for c in found)
    out.append("all good" if not (broken or warn)
               else f"{broken} broken, {warn} warning{'s' if warn != 1 else ''}")
    sys.stdout.write("\n".join(out) + "\n")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
