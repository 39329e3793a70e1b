"""Model management commands: pull, list, show, rm, cp, import, catalog, search."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from llmtui.cli.output import human_age, human_size, info, print_json, print_table


def _store() -> Any:
    from llmtui.config import Settings

    return Settings.load().store()


def pull(
    model: str = typer.Argument(..., help="Catalog name (smollm2:135m), URL or hf://ORG/REPO/FILE."),
    name: str | None = typer.Option(None, "--name", "-n", help="Install under this name."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected sha256 of a URL's file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Download a model into the store (resumable, verified)."""
    from llmtui.cli.progress import PullProgress
    from llmtui.models.pull import pull as do_pull

    store = _store()
    with PullProgress(quiet=quiet) as progress:
        manifest = do_pull(store, model, name=name, sha256=sha256, on_event=progress)
    if not quiet:
        info(f"pulled {manifest.name} ({human_size(manifest.size)})")


def import_(
    path: Path = typer.Argument(..., help="A GGUF file, an ONNX / OpenVINO model folder, a "
                                "Piper voice (.onnx with its .onnx.json) or a faster-whisper "
                                "(CTranslate2) folder."),
    name: str = typer.Option(..., "--name", "-n", help="Install as this name (foo:latest)."),
    link: bool = typer.Option(False, "--link", help="Run it where it lies; no copy."),
    mmproj: Path | None = typer.Option(None, "--mmproj", help="The vision projector "
                                       "(mmproj GGUF) that goes with the model."),
) -> None:
    """Add a local model to the store (copied, or linked with --link)."""
    from llmtui.cli.progress import PullProgress
    from llmtui.models.pull import import_file, speech_files

    # A speech model (Whisper folder, Piper voice) is read by import_file; other folders
    # are ONNX / OpenVINO models.
    if path.is_dir() and speech_files(path.expanduser()) is None:
        from llmtui.errors import InvalidInput
        from llmtui.models.folders import add_folder

        if link:
            raise InvalidInput("--link is for single GGUF files; a folder is copied")
        with PullProgress() as progress:
            manifest = add_folder(_store(), path, name, on_event=progress)
        info(f"copied {path} as {manifest.name} ({manifest.format})")
        return
    with PullProgress() as progress:
        manifest = import_file(_store(), path, name, link=link, mmproj=mmproj,
                               on_event=progress)
    how = "linked" if link else "copied"
    extra = f" with projector {mmproj.name} (vision)" if mmproj is not None else ""
    info(f"{how} {path}{extra} as {manifest.name}")


def list_models(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List installed models."""
    store = _store()
    manifests = store.models()
    if json_out:
        print_json([
            {**m.to_json(), "modified": store.modified(m),
             "location": str(store.layer_path(m.layers[0]) if len(m.layers) == 1
                             else store.model_dir(m))}
            for m in manifests
        ])
        return
    now = time.time()
    rows = [
        [m.name, human_size(m.size), m.quantization or "-", m.format, m.family or "-",
         "text+image" if m.projector else "text", human_age(now - store.modified(m)),
         str(store.layer_path(m.layers[0])) if m.linked else "store"]
        for m in manifests
    ]
    if not rows and sys.stdout.isatty():
        info("no models installed; try: llm pull smollm2:135m")
        return
    print_table(None, ["NAME", "SIZE", "QUANT", "FORMAT", "FAMILY", "INPUT", "MODIFIED",
                       "LOCATION"], rows)


def show(
    model: str = typer.Argument(..., help="Installed model name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    template: bool = typer.Option(False, "--template", help="Print only the chat template."),
    metadata: bool = typer.Option(False, "--metadata", help="Include every GGUF metadata key."),
) -> None:
    """Show a model's details, read from the file itself."""
    store = _store()
    manifest, path = store.resolve_file(model)
    gguf = None
    if manifest.format == "gguf":
        from llmtui.models.gguf_info import read_info

        gguf = read_info(path)
    from llmtui.models.capabilities import capabilities

    native: dict[str, Any] = {}
    if manifest.format in ("onnx", "openvino"):
        from llmtui.models.folders import native_metadata

        native = native_metadata(path, manifest.format)
    chat_template = gguf.chat_template if gguf else native.get("chat_template")
    if template:
        if not chat_template:
            info(f"{manifest.name} has no chat template (plain completion)")
            return
        sys.stdout.write(chat_template.rstrip("\n") + "\n")
        return
    data: dict[str, Any] = {
        "name": manifest.name, "format": manifest.format, "family": manifest.family,
        "architecture": gguf.architecture if gguf else manifest.architecture,
        "parameters": gguf.parameters if gguf else manifest.parameters,
        "parameter_size": manifest.parameter_size,
        "quantization": gguf.quantization if gguf else manifest.quantization,
        "context_length": gguf.context_length if gguf else manifest.context_length,
        "embedding_length": gguf.embedding_length if gguf else None,
        "chat_template": bool(chat_template),
        "runtime": native.get("runtime"),
        "license": (gguf.license if gguf else None) or manifest.license,
        "capabilities": capabilities(manifest, gguf.metadata if gguf else {},
                                     manifest.template or chat_template),
        "size": manifest.size, "digest": f"sha256:{manifest.digest}",
        "source": manifest.source,
        "location": str(path if len(manifest.layers) == 1 or manifest.format == "gguf"
                        else store.model_dir(manifest)),
        "linked": manifest.linked,
        "created": manifest.created,
    }
    meta = gguf.metadata if gguf is not None else native.get("metadata", {})
    projector = _projector(store, manifest)
    if projector is not None:
        data["projector"] = projector
    if manifest.adapters:
        data["adapters"] = [a.filename for a in manifest.adapters]
    if manifest.tuned:
        data["tuned"] = manifest.tuned
    if json_out:
        if gguf is not None or native:
            data["template"] = chat_template
            if metadata:
                data["metadata"] = meta
        print_json(data)
        return
    rows = [[k.replace("_", " "), _fmt(v)] for k, v in data.items()
            if v not in (None, "") and k not in ("projector", "tuned")]
    tuned = manifest.tuned
    if tuned:  # `llm finetune` / `llm train`: from what, on what, how, and the result
        st = tuned.get("settings") or {}
        data_row = (f"{tuned.get('data')} ({tuned.get('records')} records, "
                    f"sha256 {str(tuned.get('data_sha256'))[:12]})")
        if tuned.get("trained_from_scratch"):
            rows += [["trained on", data_row],
                     ["training", f"{tuned.get('parameters', 0) / 1e6:.1f}M-parameter "
                                  f"Llama ({st.get('size')}), {st.get('steps')} steps"],
                     ["perplexity (held-out)",
                      f"{tuned.get('perplexity_before')} -> {tuned.get('perplexity_after')}"]]
        else:
            rows += [["tuned from",
                      f"{tuned.get('base')} ({tuned.get('base_digest', '')[:19]})"],
                     ["tuned on", data_row],
                     ["tuning", f"LoRA rank {st.get('rank')}, alpha {st.get('alpha')}, lr "
                                f"{st.get('lr')}, {st.get('steps')} steps"
                                + (f", merged {tuned['merged']}" if tuned.get("merged")
                                   else "")],
                     [f"loss ({tuned.get('evaluated_on')})",
                      f"{tuned.get('loss_before')} -> {tuned.get('loss_after')}"]]
        if tuned.get("device"):
            rows.append(["device", str(tuned["device"])])
    if projector is not None:
        rows += [["projector", f"{projector['projector_type']} ({projector['file']})"],
                 ["image size", _fmt(projector["image_size"])],
                 ["tokens per image", _fmt(projector["tokens_per_image"] or "dynamic")]]
    if metadata and meta:
        rows += [[k, _fmt(v)[:120]] for k, v in sorted(meta.items())]
    print_table(manifest.name, ["FIELD", "VALUE"], rows)


def _projector(store: Any, manifest: Any) -> dict[str, Any] | None:
    """What `llm show` says about a vision model's projector, read from the file."""
    path = store.projector_path(manifest)
    if path is None:
        return None
    from llmtui.models.projector import read_projector

    return {**read_projector(path, manifest.projector.filename).to_json(),
            "file": manifest.projector.filename, "size": manifest.projector.size}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, int) and value > 10**6:
        return f"{value:,}"
    return str(value)


def rm(models: list[str] = typer.Argument(..., help="Model names.")) -> None:
    """Remove models; a blob is deleted only when no other model uses it."""
    from llmtui.models.names import ModelName

    store = _store()
    names = [ModelName.parse(m) for m in models]
    for name in names:  # check all first: remove nothing if one name is wrong
        store.get(name)
    for name in names:
        _unload_if_running(str(name))
        store.remove(name)
        info(f"deleted {name}")


def _unload_if_running(name: str) -> None:
    """A loaded model is unloaded first: `llm ps` stops listing it, and its file's space
    is freed at once instead of when the worker that maps it would have ended."""
    import contextlib

    from llmtui.daemon.client import Client
    from llmtui.errors import DaemonUnavailable

    with contextlib.suppress(DaemonUnavailable):  # no daemon: nothing is loaded
        Client(autostart=False).unload(name)


def cp(src: str = typer.Argument(...), dst: str = typer.Argument(...)) -> None:
    """Copy a model under a new name (no data is duplicated)."""
    manifest = _store().copy(src, dst)
    info(f"copied {src} to {manifest.name}")


def catalog(
    term: str | None = typer.Argument(None, help="Only entries matching this word."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What can be pulled, whether it fits this machine and how fast it would decode."""
    from llmtui.config import Settings
    from llmtui.machine import estimate, for_settings, recommend
    from llmtui.models.catalog import load_catalog, search

    entries = search(term) if term else list(load_catalog().values())
    machine = for_settings(Settings.load())
    installed = {m.name for m in _store().models()}
    ests = {e.name: estimate(machine, e.size, e.ram) for e in entries}
    rec = next(iter(recommend(machine, load_catalog().values())), None)
    if json_out:
        print_json({
            "ram_total": machine.ram_total,
            "bandwidth": round(machine.bandwidth),
            "recommended": rec.name if rec else None,
            "models": [{**e.to_json(), **ests[e.name].to_json(),
                        "installed": e.name in installed} for e in entries],
        })
        return
    rows = [
        [e.name, e.parameters, e.quantization, human_size(e.size), human_size(e.ram),
         ests[e.name].fit, (f"~{ests[e.name].tokens_per_second:.0f}"
                            if {"chat", "completion"} & set(e.capabilities) else "-"),
         ",".join(e.capabilities), "yes" if e.name in installed else ""]
        for e in entries
    ]
    print_table(f"Catalog (this machine: {human_size(machine.ram_total)} RAM, "
                f"{machine.bandwidth / 1e9:.1f} GB/s measured)",
                ["NAME", "PARAMS", "QUANT", "SIZE", "RAM", "FIT", "TOK/S", "CAPABILITIES",
                 "INSTALLED"], rows)
    if rec is not None:
        info(f"recommended for this machine: {rec.name} ({rec.description}; "
             f"~{ests.get(rec.name, estimate(machine, rec.size, rec.ram)).tokens_per_second:.0f}"
             " tokens/s expected)")


def search_cmd(
    term: str = typer.Argument(..., help="A word: name, family or capability."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search the catalog."""
    catalog(term, json_out)


def register(app: typer.Typer) -> None:
    app.command("pull")(pull)
    app.command("import")(import_)
    app.command("list")(list_models)
    app.command("ls", hidden=True)(list_models)
    app.command("show")(show)
    app.command("rm")(rm)
    app.command("cp")(cp)
    app.command("catalog")(catalog)
    app.command("search")(search_cmd)
