"""Go binaries built into the cache (Kubernetes, kwok): one entry per binary, for its main
module, with the licence of that module's LICENSE file in the module cache. The modules linked
into it (`go version -m`) are returned too, for the not-to-use list."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.licences.model import (
    Item,
    Kind,
    in_debian_root,
    is_licence_file,
    read_text,
    walk_files,
)
from harness.licences.texts import classify_text

_ELF = b"\x7fELF"


@dataclass(frozen=True)
class GoBinary:
    item: Item
    #: every module linked in (`dep` lines), for the not-to-use check
    deps: tuple[str, ...]


def escape_module(path: str) -> str:
    """The module cache's spelling of a module path: an upper-case letter becomes `!` + lower."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def scan(cache: Path, modcache: Path) -> list[GoBinary]:
    """Every Go executable in a `bin/` folder of a component (not those inside a Debian root,
    which their package's copyright covers)."""
    go = shutil.which("go")
    found = []
    for path in walk_files(cache):
        if path.parent.name != "bin" or in_debian_root(cache, path):
            continue
        if not _is_elf(path):
            continue
        info = _buildinfo(go, path) if go else None
        if info is None:
            continue
        module, version, deps = info
        licence, origin = _module_licence(modcache, module, version)
        source = str(path.relative_to(cache))
        found.append(GoBinary(Item(Kind.GO, module, version, source, licence, origin), deps))
    return found


def parse_buildinfo(text: str) -> tuple[str, str, tuple[str, ...]] | None:
    """`go version -m` output -> (main module, its version, linked modules)."""
    module = version = ""
    deps = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "mod":
            module, version = fields[1], fields[2]
        elif len(fields) >= 2 and fields[0] == "dep":
            deps.append(fields[1])
    return (module, version, tuple(deps)) if module else None


def _buildinfo(go: str, path: Path) -> tuple[str, str, tuple[str, ...]] | None:
    out = subprocess.run(
        [go, "version", "-m", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GOTOOLCHAIN": "local"},
        timeout=60,
    )
    return parse_buildinfo(out.stdout) if out.returncode == 0 else None


def _module_licence(modcache: Path, module: str, version: str) -> tuple[str, str]:
    folder = modcache / f"{escape_module(module)}@{version}"
    if not folder.is_dir():
        return "", f"{folder} is not in the module cache"
    for file in sorted(folder.iterdir()):
        if file.is_file() and is_licence_file(file.name):
            stated = classify_text(read_text(file))
            if stated:
                return stated, f"module cache {module}@{version}/{file.name}"
    return "", f"no licence file in {folder}"


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == _ELF
    except OSError:
        return False
