"""Install the JavaScript test clients (tests/js/package.json) once into a cache outside
the repository, with npm's own registry configuration. Run by `make jsdeps`; the JS test
fixture calls it too when the cache is missing or stale."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    env = os.environ.get("LLMTUI_JS_DEPS")
    return Path(env) if env else Path.home() / ".cache" / "llmtui-js"


def ensure(dest: Path | None = None) -> Path:
    """The node_modules folder holding the pinned clients, installing them if needed."""
    dest = dest or cache_dir()
    spec = (HERE / "package.json").read_bytes()
    tag = hashlib.sha256(spec).hexdigest()
    stamp = dest / ".installed"
    if stamp.exists() and stamp.read_text().strip() == tag and (dest / "node_modules").is_dir():
        return dest / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed for the JavaScript client tests (make sysdeps "
                         "installs nodejs and npm)")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "package.json").write_bytes(spec)
    subprocess.run([npm, "install", "--no-package-lock", "--no-audit", "--no-fund",
                    "--loglevel=error"], cwd=dest, check=True)
    stamp.write_text(tag)
    return dest / "node_modules"


if __name__ == "__main__":
    print(f"{ensure()} ok", file=sys.stderr)
