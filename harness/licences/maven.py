"""Maven jars anywhere in the cache: their coordinates, and the licence their POMs name.

Any `*.jar` under a component's folder counts (so a new component needs no change here),
including jars nested in a Spring Boot jar (`BOOT-INF/lib/`) and the artifacts a fat jar carries
(each `META-INF/maven/<group>/<artifact>/pom.properties` inside it). A jar's coordinates come from
its own pom.properties, else from the file of the same name in the local Maven repository. Its
licence comes from the POM's `<licenses>` (the local repository's POM, else the one inside the
jar), following `<parent>` through the local repository when a POM names none; then from the
manifest's `Bundle-License`; then from the jar's META-INF/LICENSE text.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from harness.licences.model import Item, Kind, in_debian_root, is_licence_file, walk_files
from harness.licences.texts import classify_text

#: groups this repository builds itself (the Operaton engine under engine/): our own licence
OWN_GROUPS: tuple[str, ...] = ("org.phee",)
#: how many `<parent>` steps we follow before giving up (real chains are 2-5 long)
PARENT_DEPTH = 12
_PROPS = re.compile(r"^META-INF/maven/([^/]+)/([^/]+)/pom\.properties$")


@dataclass(frozen=True)
class Gav:
    group: str
    artifact: str
    version: str

    @property
    def name(self) -> str:
        return f"{self.group}:{self.artifact}"

    def __str__(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


@dataclass(frozen=True)
class Pom:
    licences: tuple[str, ...]
    parent: Gav | None


def parse_pom(text: str | bytes) -> Pom:
    """A POM's `<licenses>` (name, else URL) and its `<parent>`; an unreadable POM names none."""
    try:
        # Local files Maven wrote from Maven Central (or a jar's own copy); expat refuses
        # external entities and entity expansion bombs since 2.4.1.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError:
        return Pom((), None)
    for element in root.iter():  # drop the POM namespace so paths stay short
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.split("}", 1)[1]
    licences = []
    for lic in root.findall("./licenses/license"):
        name = (lic.findtext("name") or "").strip() or (lic.findtext("url") or "").strip()
        if name:
            licences.append(" ".join(name.split()))
    parent = None
    node = root.find("./parent")
    if node is not None:
        parts = [(node.findtext(t) or "").strip() for t in ("groupId", "artifactId", "version")]
        if all(parts):
            parent = Gav(*parts)
    return Pom(tuple(licences), parent)


class MavenRepo:
    """The local Maven repository (~/.m2/repository) as fetchers.maven_* fill it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._poms: dict[Gav, Pom | None] = {}

    def pom_path(self, gav: Gav) -> Path:
        folder = self.root.joinpath(*gav.group.split("."), gav.artifact, gav.version)
        return folder / f"{gav.artifact}-{gav.version}.pom"

    def pom(self, gav: Gav) -> Pom | None:
        if gav not in self._poms:
            path = self.pom_path(gav)
            self._poms[gav] = parse_pom(path.read_bytes()) if path.is_file() else None
        return self._poms[gav]

    def licences(self, gav: Gav, first: Pom | None = None) -> tuple[tuple[str, ...], str] | None:
        """The licences `gav`'s POM (or `first`, a POM found elsewhere) or its nearest parent
        names, with where they were read; None when the chain has no POM we can read."""
        pom = first if first is not None else self.pom(gav)
        current = gav
        for _ in range(PARENT_DEPTH):
            if pom is None:
                return None
            if pom.licences:
                step = "pom" if current == gav else f"parent pom {current}"
                return pom.licences, step
            if pom.parent is None:
                return (), f"pom {gav} (no <licenses> in its parent chain)"
            current = pom.parent
            pom = self.pom(current)
        return None

    @cached_property
    def jars_by_name(self) -> dict[str, list[Path]]:
        index: dict[str, list[Path]] = {}
        if self.root.is_dir():
            for path in self.root.rglob("*.jar"):
                index.setdefault(path.name, []).append(path)
        return index

    def coordinates_of(self, filename: str, size: int | None) -> Gav | None:
        """The coordinates of a jar by its file name, from where Maven stored that file."""
        found = self.jars_by_name.get(filename, [])
        if size is not None and len(found) > 1:
            found = [p for p in found if p.stat().st_size == size] or found
        if not found:
            return None
        parts = found[0].relative_to(self.root).parts
        if len(parts) < 4:
            return None
        return Gav(".".join(parts[:-3]), parts[-3], parts[-2])


def scan(cache: Path, repo: MavenRepo, own_licence: str) -> list[Item]:
    """Every Maven artifact in the cache's jars, one Item per place it was found; artifacts of
    OWN_GROUPS carry `own_licence` (this repository's)."""
    items: list[Item] = []
    for path in jar_paths(cache):
        label = str(path.relative_to(cache))
        try:
            with zipfile.ZipFile(path) as jar:
                found = _scan_jar(jar, label, path.name, path.stat().st_size, repo)
                items.extend(_own(item, own_licence) for item in found)
        except (zipfile.BadZipFile, OSError) as err:
            items.append(_unreadable(label, path.name, str(err)))
    return items


def jar_paths(cache: Path) -> Iterator[Path]:
    """The jar files `scan` reads: all but those of an unpacked Debian package."""
    return (p for p in walk_files(cache) if p.suffix == ".jar" and not in_debian_root(cache, p))


def _scan_jar(
    jar: zipfile.ZipFile, label: str, filename: str, size: int | None, repo: MavenRepo
) -> Iterator[Item]:
    names = jar.namelist()
    carried = [_props(jar, n) for n in names if _PROPS.match(n)]
    inside = [g for g in carried if g is not None]
    stem = filename.removesuffix(".jar")
    own = next((g for g in inside if stem.startswith(f"{g.artifact}-{g.version}")), None)
    if own is None and len(inside) == 1 and stem.startswith(inside[0].artifact):
        own = inside[0]
    if own is None:
        own = repo.coordinates_of(filename, size)
    if own is None:
        yield _item(Gav("?", stem, "?"), label, *_fallback(jar, names))
    else:
        yield _item(own, label, *_licence(jar, own, repo, fallback=True))
    for gav in inside:
        if gav != own:
            yield _item(gav, f"{label} (carried inside)", *_licence(jar, gav, repo, False))
    for member in names:
        if member.endswith(".jar") and not member.endswith("/"):
            nested = zipfile.ZipFile(io.BytesIO(jar.read(member)))
            name = member.rsplit("/", 1)[-1]
            yield from _scan_jar(nested, f"{label}!/{member}", name, None, repo)


def _licence(jar: zipfile.ZipFile, gav: Gav, repo: MavenRepo, fallback: bool) -> tuple[str, str]:
    found = repo.licences(gav)
    if found is None:
        embedded = f"META-INF/maven/{gav.group}/{gav.artifact}/pom.xml"
        if embedded in jar.namelist():
            found = repo.licences(gav, first=parse_pom(jar.read(embedded)))
    if found is not None and found[0]:
        return " OR ".join(found[0]), found[1]
    if fallback:
        return _fallback(jar, jar.namelist())
    return "", found[1] if found else "no POM found"


def _fallback(jar: zipfile.ZipFile, names: list[str]) -> tuple[str, str]:
    """The manifest's Bundle-License, else the licence a META-INF/LICENSE file states."""
    if "META-INF/MANIFEST.MF" in names:
        manifest = jar.read("META-INF/MANIFEST.MF").decode("utf-8", errors="replace")
        unfolded = manifest.replace("\r\n ", "").replace("\n ", "")
        for line in unfolded.splitlines():
            if line.startswith("Bundle-License:"):
                return line.split(":", 1)[1].strip(), "MANIFEST.MF Bundle-License"
    for name in names:
        folder, _, base = name.rpartition("/")
        if folder == "META-INF" and is_licence_file(base):
            text = jar.read(name).decode("utf-8", errors="replace")
            stated = classify_text(text)
            if stated:
                return stated, name
    return "", "no POM, Bundle-License or META-INF/LICENSE"


def _props(jar: zipfile.ZipFile, member: str) -> Gav | None:
    values = {}
    for line in jar.read(member).decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[key.strip()] = value.strip()
    parts = [values.get(k, "") for k in ("groupId", "artifactId", "version")]
    return Gav(*parts) if all(parts) else None


def _item(gav: Gav, source: str, licence: str, origin: str) -> Item:
    return Item(Kind.MAVEN, gav.name, gav.version, source, licence, origin)


def _own(item: Item, own_licence: str) -> Item:
    if item.name.split(":", 1)[0] not in OWN_GROUPS:
        return item
    return replace(item, licence=own_licence, origin="built from this repository (pyproject.toml)")


def _unreadable(label: str, filename: str, error: str) -> Item:
    stem = filename.removesuffix(".jar")
    return Item(Kind.MAVEN, f"?:{stem}", "?", label, "", f"unreadable jar: {error}")
