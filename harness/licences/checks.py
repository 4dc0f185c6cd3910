"""One verdict per inventoried item: the licence policy, the refused Maven groups, the
reviewed exceptions for unknown licences, and the package lists' `not-to-use` rows."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.licences.model import Item, Kind
from harness.licences.policy import Status, Verdict, canonical, judge, refused_coordinate
from harness.licences.python_dists import normalise_name

#: package list file -> the kind of its names (nuget.tsv names nothing we fetch)
LIST_KINDS: dict[str, tuple[Kind, ...]] = {
    "maven-partial.tsv": (Kind.MAVEN,),
    "pypi.tsv": (Kind.PYTHON, Kind.WHEEL),
    "npm.tsv": (Kind.NPM,),
    "go-partial.tsv": (Kind.GO,),
}


@dataclass(frozen=True)
class Exception_:
    kind: Kind
    name: str
    version: str
    licence: str
    where: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


def load_exceptions(path: Path) -> list[Exception_]:
    """The reviewed exceptions file; each entry must name a licence the policy accepts."""
    if not path.is_file():
        return []
    data = tomllib.loads(path.read_text())
    entries = []
    for raw in data.get("exception", []):
        entry = Exception_(
            Kind(raw["kind"]), raw["name"], raw["version"], raw["licence"], raw["where"]
        )
        if not judge(entry.licence).ok:
            raise ValueError(f"{path}: {entry.name} names {entry.licence!r}, which is not taken")
        entries.append(entry)
    return entries


def load_not_to_use(folder: Path) -> dict[str, str]:
    """`kind:name` -> the list's reason, for every `not-to-use` row of the package lists."""
    refused: dict[str, str] = {}
    for filename, kinds in LIST_KINDS.items():
        path = folder / filename
        if not path.is_file():
            continue
        with path.open(errors="replace") as handle:
            for line in handle:
                if "\tnot-to-use\t" not in line:
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 2 or fields[1] != "not-to-use":
                    continue
                reason = next((f for f in reversed(fields) if f.strip()), "")
                for kind in kinds:
                    refused[f"{kind}:{_list_name(kind, fields[0])}"] = reason
    return refused


def _list_name(kind: Kind, name: str) -> str:
    return normalise_name(name) if kind in (Kind.PYTHON, Kind.WHEEL) else name


def verdict(
    item: Item, exceptions: Iterable[Exception_], not_to_use: dict[str, str]
) -> tuple[Verdict, bool]:
    """The item's verdict, and whether a reviewed exception decided it."""
    listed = not_to_use.get(f"{item.kind}:{_list_name(item.kind, item.name)}")
    if listed is not None:
        return Verdict(Status.REFUSED, "not-to-use", f"listed not-to-use: {listed}"), False
    if item.kind is Kind.MAVEN:
        why = refused_coordinate(item.name.split(":", 1)[0])
        if why:
            return Verdict(Status.REFUSED, judge(item.licence).canonical, why), False
    result = judge(item.licence)
    for other in item.also:
        status, name = canonical(other)
        if status is Status.REFUSED:
            return Verdict(Status.REFUSED, result.canonical, f"a file is under {name}"), False
    if result.status is Status.UNKNOWN:
        for entry in exceptions:
            if entry.key == item.key and entry.version == item.version:
                read = judge(entry.licence)
                return Verdict(Status.ACCEPTED, read.canonical, f"exception: {entry.where}"), True
    return result, False


def go_deps_not_to_use(deps: Iterable[str], not_to_use: dict[str, str]) -> list[str]:
    """The modules linked into a Go binary that a list says not to use."""
    return [d for d in deps if f"{Kind.GO}:{d}" in not_to_use]
