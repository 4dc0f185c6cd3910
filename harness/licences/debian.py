"""Debian packages unpacked into the cache: `usr/share/doc/<package>/copyright`.

A machine-readable copyright file (DEP-5) names the package's licence in the `Files: *`
paragraph (else the header's); the other paragraphs' `License:` fields cover single files and
are kept in `Item.also`, where only a refused one counts (their names are often the file's own,
e.g. "Custom-regex", so an unknown one proves nothing). A free-form file is read as text.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from harness.licences.model import Item, Kind, read_text, walk_files
from harness.licences.texts import classify_text

_CHANGELOG_HEAD = re.compile(r"^\S+ \(([^)]+)\)")


def scan(cache: Path) -> list[Item]:
    items = []
    for path in walk_files(cache):
        parts = path.parts
        if path.name == "copyright" and parts[-4:-2] == ("share", "doc") and "usr" in parts:
            items.append(_item(path, cache))
    return items


def parse_copyright(text: str) -> tuple[str, tuple[str, ...]]:
    """(the package's licence, every other `License:` name) from a copyright file."""
    if not text.startswith("Format:"):
        return classify_text(text) or "", ()
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    main = ""
    others: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        fields = _fields(paragraph)
        licence = fields.get("license", "").strip().split("\n")[0]
        if not licence:
            continue
        files = fields.get("files", "").split()
        if files[:1] == ["*"] or (index == 0 and not main):
            main = licence
        elif licence not in others:
            others.append(licence)
    return main, tuple(o for o in others if o != main)


def _fields(paragraph: str) -> dict[str, str]:
    """A paragraph's fields by lower-cased name; continuation lines are kept after a newline."""
    fields: dict[str, str] = {}
    key = ""
    for line in paragraph.splitlines():
        if line[:1].isspace():
            if key:
                fields[key] += "\n" + line.strip()
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def _version(doc: Path) -> str:
    """From the package's changelog.Debian.gz first line: `name (version) dist; ...`."""
    for name in ("changelog.Debian.gz", "changelog.gz"):
        path = doc / name
        if path.is_file():
            try:
                with gzip.open(path, "rt", errors="replace") as handle:
                    match = _CHANGELOG_HEAD.match(handle.readline())
            except OSError:
                continue
            if match:
                return match.group(1)
    return "?"


def _item(path: Path, cache: Path) -> Item:
    main, others = parse_copyright(read_text(path))
    source = str(path.relative_to(cache))
    package = path.parent.name
    return Item(Kind.DEBIAN, package, _version(path.parent), source, main, "copyright", others)
