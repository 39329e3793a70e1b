"""``llm cache``: the prompt states kept on disk (restored instead of evaluated again)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from llmtui.cli.output import human_age, human_size, info, print_json, print_table

app = typer.Typer(help="The saved prompt states: list them, or clear them.",
                  no_args_is_help=True)


def _root() -> tuple[Path, Any]:
    from llmtui.backends.kvcache import cache_root
    from llmtui.config import Settings

    settings = Settings.load()
    return cache_root(settings.paths.cache_dir), settings


def _names(settings: Any) -> dict[str, str]:
    """Model names by file digest, to say whose states these are."""
    names: dict[str, str] = {}
    try:
        for m in settings.store().models():
            names.setdefault(m.digest, m.name)
    except Exception:
        pass
    return names


@app.command("ls")
def ls(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Saved prompt states: model, tokens, size, last used."""
    from llmtui.backends.kvcache import list_entries

    root, settings = _root()
    entries = list_entries(root)
    names = _names(settings)
    for e in entries:
        e["model"] = names.get(str(e["digest"]), f"sha256:{str(e['digest'])[:12]}")
    if json_out:
        print_json(entries)
        return
    rows = [[e["model"], str(e["tokens"]), human_size(e["size"]),
             human_age(time.time() - float(e["used"]))] for e in entries]
    print_table(None, ["MODEL", "TOKENS", "SIZE", "USED"], rows)
    total = sum(int(e["size"]) for e in entries)
    limit = settings.config.get("prompt_cache_size")
    info(f"{len(entries)} saved prompts, {human_size(total)} of {limit} "
         "(llm config set prompt_cache_size ...)")


@app.command("clear")
def clear(model: str | None = typer.Option(None, "--model", "-m",
                                           help="Only this model's states.")) -> None:
    """Remove saved prompt states (all, or one model's)."""
    root, settings = _root()
    digests: set[str] | None = None
    if model is not None:
        from llmtui.models.names import ModelName

        manifest = settings.store().get(ModelName.parse(model))
        digests = {manifest.digest}
    removed = 0
    for path in root.glob("*/*.kv"):
        if digests is None or path.parent.name in digests:
            path.unlink(missing_ok=True)
            removed += 1
    info(f"removed {removed} saved prompt{'s' if removed != 1 else ''}")
