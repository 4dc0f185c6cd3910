"""npm packages installed into the cache (`node_modules`, nested ones too)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from harness.licences.model import SKIPPED_TOP, Item, Kind, is_licence_file, read_text
from harness.licences.texts import classify_text


def scan(cache: Path) -> list[Item]:
    """Every package under every `node_modules` of the cache's component folders."""
    items = []
    for modules in _node_modules(cache):
        for package in _packages(modules):
            item = _item(package, cache)
            if item is not None:
                items.append(item)
    return items


def licence_of(manifest: dict[str, object]) -> str:
    """`license` (a string or `{type}`), else the old `licenses: [{type}]` list as options."""
    value = manifest.get("license")
    if isinstance(value, dict):
        value = value.get("type")
    if isinstance(value, str) and value.strip():
        return value.strip()
    old = manifest.get("licenses")
    if isinstance(old, list):
        names = [str(e.get("type", "")) if isinstance(e, dict) else str(e) for e in old]
        return " OR ".join(n for n in names if n)
    return ""


def _node_modules(cache: Path) -> Iterator[Path]:
    """The top `node_modules` folders (one per npm install in the cache)."""
    if not cache.is_dir():
        return
    for top in sorted(cache.iterdir()):
        if top.name in SKIPPED_TOP or not top.is_dir():
            continue
        for folder, dirs, _files in os.walk(top):
            if "node_modules" in dirs:
                yield Path(folder) / "node_modules"
            # a node_modules is read by _packages; anything else may hold another install
            dirs[:] = sorted(
                d for d in dirs if d != "node_modules" and not d.endswith(".dist-info")
            )


def _packages(modules: Path) -> Iterator[Path]:
    """Package folders in a `node_modules` (scoped ones too), then those nested in each."""
    for entry in sorted(modules.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        folders = sorted(entry.iterdir()) if entry.name.startswith("@") else [entry]
        for folder in folders:
            if folder.is_dir() and not folder.is_symlink():
                yield folder
                if (folder / "node_modules").is_dir():
                    yield from _packages(folder / "node_modules")


def _item(folder: Path, cache: Path) -> Item | None:
    try:
        manifest = json.loads((folder / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or "name" not in manifest:
        return None
    licence, origin = licence_of(manifest), "package.json"
    if not licence:
        for file in sorted(folder.iterdir()):
            if file.is_file() and is_licence_file(file.name):
                stated = classify_text(read_text(file))
                if stated:
                    licence, origin = stated, file.name
                    break
    source = str(folder.relative_to(cache))
    version = str(manifest.get("version", "?"))
    return Item(Kind.NPM, str(manifest["name"]), version, source, licence, origin)
