"""The licence check over this machine's real venv and cache (what `make fetch` left there):
it lists every installed distribution and every jar, and nothing fails the policy."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from harness import licences
from harness.components.base import cache_root
from harness.licences import maven, python_dists
from harness.licences.model import Kind

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def report() -> licences.Report:
    return licences.run()


def test_every_venv_distribution_is_listed(report: licences.Report) -> None:
    installed = {
        python_dists.normalise_name(d.metadata["Name"])
        for d in metadata.distributions(path=[str(p) for p in python_dists.site_packages()])
    }
    listed = {
        python_dists.normalise_name(r.item.name) for r in report.rows if r.item.kind is Kind.PYTHON
    }
    assert listed == installed
    assert {"phee", "pydantic", "httpx", "tenacity"} <= listed


def test_every_jar_in_the_cache_is_listed(report: licences.Report) -> None:
    cache = cache_root()
    jars = {str(p.relative_to(cache)) for p in maven.jar_paths(cache)}
    assert jars, f"no jar under {cache}: run `make fetch` first"
    sources = {r.item.source for r in report.rows if r.item.kind is Kind.MAVEN}
    missing = sorted(jars - sources)
    assert not missing, f"jars the inventory did not list: {missing[:20]}"


def test_nothing_from_the_refused_vendors_and_no_failure(
    report: licences.Report, tmp_path: Path
) -> None:
    vendors = sorted(
        {
            f"{r.item.name} ({r.item.component})"
            for r in report.rows
            if r.item.kind is Kind.MAVEN
            and r.item.name.startswith(("io.camunda", "org.elasticsearch", "co.elastic"))
        }
    )
    table = licences.write_table(report, tmp_path / "inventory.tsv")
    assert table.read_text().count("\n") == len(report.rows) + 1
    assert not vendors, f"fetched from a refused vendor: {vendors[:20]}"
    assert report.ok, licences.summary(report, table, 0.0)
