"""The whole check: inventory the venv and the cache, judge each item, write the table,
summarise. `run` is what `phee licences` and `python -m harness.licences` call."""

from __future__ import annotations

import os
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.components.base import cache_root
from harness.licences import checks, debian, gobin, maven, npm, python_dists
from harness.licences.model import Item
from harness.licences.policy import Status, Verdict

REPO_ROOT = Path(__file__).resolve().parents[2]
EXCEPTIONS = REPO_ROOT / "docs" / "licences" / "exceptions.toml"
#: the workplace's package lists (their `not-to-use` rows); PHEE_PACKAGE_LISTS overrides
PACKAGE_LISTS = Path("/work/.library/env/packages")


@dataclass(frozen=True)
class Row:
    item: Item
    verdict: Verdict
    by_exception: bool = False


@dataclass
class Report:
    rows: list[Row]
    #: problems that are not one item's licence (a Go binary linking a not-to-use module)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.verdict.ok]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.problems


def package_lists() -> Path:
    return Path(os.environ.get("PHEE_PACKAGE_LISTS") or PACKAGE_LISTS)


def project_licence() -> str:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    licence = data["project"].get("license", "")
    return str(licence.get("text", "") if isinstance(licence, dict) else licence)


def inventory(
    cache: Path, m2: Path, *, venv: list[Path], lock: Path | None, not_to_use: dict[str, str]
) -> Report:
    """Every item, not judged yet; and the Go binaries' modules checked against the lists."""
    locked = python_dists.locked_names(lock) if lock and lock.is_file() else None
    items = python_dists.venv(venv, locked)
    items += python_dists.wheels(cache)
    items += maven.scan(cache, maven.MavenRepo(m2), project_licence())
    items += npm.scan(cache)
    items += debian.scan(cache)
    binaries = gobin.scan(cache, cache / "go" / "mod")
    items += [b.item for b in binaries]
    report = Report([Row(i, Verdict(Status.UNKNOWN, "")) for i in items])
    report.notes.append(f"{len(binaries)} Go binaries checked against the lists with their modules")
    report.problems += [
        f"go {b.item.source} links {dep}, which a package list says not to use"
        for b in binaries
        for dep in b.deps
        if dep in checks.go_deps_not_to_use(b.deps, not_to_use)
    ]
    return report


def run(
    cache: Path | None = None,
    m2: Path | None = None,
    exceptions: Path = EXCEPTIONS,
    lists: Path | None = None,
) -> Report:
    """Inventory and judge everything; the table is written by `write_table`."""
    cache = cache or cache_root()
    m2 = m2 or Path.home() / ".m2" / "repository"
    lists = lists or package_lists()
    not_to_use = checks.load_not_to_use(lists)
    venv = python_dists.site_packages()
    lock = REPO_ROOT / "uv.lock"
    report = inventory(cache, m2, venv=venv, lock=lock, not_to_use=not_to_use)
    entries = checks.load_exceptions(exceptions)
    rows = []
    used: set[str] = set()
    for row in report.rows:
        judged, by_exception = checks.verdict(row.item, entries, not_to_use)
        if by_exception:
            used.add(f"{row.item.key}@{row.item.version}")
        rows.append(Row(row.item, judged, by_exception))
    report.rows = rows
    if not not_to_use:
        report.notes.append(f"no not-to-use rows read from {lists} (folder missing?)")
    for entry in entries:
        if f"{entry.key}@{entry.version}" not in used:
            report.notes.append(f"exception for {entry.key} {entry.version} was not needed")
    return report


COLUMNS = ("kind", "artifact", "version", "source", "licence", "read as", "verdict", "why/where")


def write_table(report: Report, path: Path) -> Path:
    """The full table, one row per place an item was found, as tab-separated text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(COLUMNS)]
    for row in sorted(report.rows, key=lambda r: (r.item.kind, r.item.name, r.item.source)):
        item, judged = row.item, row.verdict
        why = judged.reason or item.origin
        cells = [item.kind, item.name, item.version, item.source, item.licence or "-"]
        cells += [judged.canonical, judged.status, why]
        lines.append("\t".join(" ".join(str(c).split()) for c in cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def summary(report: Report, table: Path, seconds: float) -> str:
    """Counts by kind and by licence, then every failure (one line per artifact and version)."""
    distinct = {(r.item.kind, r.item.name, r.item.version): r for r in report.rows}
    kinds = Counter(k for k, _, _ in distinct)
    out = [
        f"licences: {len(distinct)} artifacts in {len(report.rows)} places "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) in {seconds:.1f} s",
        f"table: {table}",
        "by licence:",
    ]
    counts = Counter(r.verdict.canonical for r in distinct.values() if r.verdict.ok)
    out += [f"  {n:5d}  {name}" for name, n in counts.most_common()]
    excepted = sorted({f"{r.item.key} {r.item.version}" for r in report.rows if r.by_exception})
    if excepted:
        out.append(f"by reviewed exception ({EXCEPTIONS.name}): {', '.join(excepted)}")
    out += [f"note: {n}" for n in report.notes]
    failed = _failures(report)
    if failed or report.problems:
        out.append(f"FAILURES ({len(failed) + len(report.problems)}):")
        out += [f"  {line}" for line in failed + report.problems]
        folders = Counter(r.item.component for r in report.failures)
        listed = ", ".join(f"{f} ({n})" for f, n in folders.most_common())
        out.append(f"failures by cache folder: {listed}")
        out.append(
            "a folder no component fetches any more is stale: remove it from the cache; "
            "an unknown licence read by hand goes in docs/licences/exceptions.toml"
        )
        out.append("licences: FAILED")
    else:
        out.append("licences: ok")
    return "\n".join(out)


def _failures(report: Report) -> list[str]:
    seen: dict[tuple[str, str, str], tuple[Row, int]] = {}
    for row in report.failures:
        key = (row.item.kind, row.item.name, row.item.version)
        first, count = seen.get(key, (row, 0))
        seen[key] = (first, count + 1)
    lines = []
    for (kind, name, version), (row, count) in sorted(seen.items()):
        where = row.item.source + (f" and {count - 1} more" if count > 1 else "")
        lines.append(f"{kind} {name} {version}: {row.verdict.reason} [{where}]")
    return lines


def main(out: Path | None = None) -> int:
    """Run the check, write the table under the cache, print the summary; 1 on any failure."""
    started = time.monotonic()
    report = run()
    table = write_table(report, out or cache_root() / "licences" / "inventory.tsv")
    print(summary(report, table, time.monotonic() - started))
    return 0 if report.ok else 1
