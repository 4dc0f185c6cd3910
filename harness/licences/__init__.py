"""The licence check (issue 11): every Python package in the venv and every artifact fetched
into the cache, with its licence and a verdict under the policy in docs/licences.md.

`python -m harness.licences` or `phee licences` runs it (and `make licences`, which `make test`
runs); it writes the full table under the cache and exits 1 on any refused or unknown licence.
"""

from __future__ import annotations

from harness.licences.inventory import Report, Row, main, run, summary, write_table
from harness.licences.model import Item, Kind
from harness.licences.policy import Status, Verdict, judge
from harness.licences.texts import classify_text

__all__ = [
    "Item",
    "Kind",
    "Report",
    "Row",
    "Status",
    "Verdict",
    "classify_text",
    "judge",
    "main",
    "run",
    "summary",
    "write_table",
]
