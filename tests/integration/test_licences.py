"""The licence check over this machine's real venv and cache (what `make fetch` left there):
it lists every installed distribution and every jar, and nothing fails the policy."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from harness import licences
from harness.components.base import cache_root
from harness.licences import gobin, maven, python_dists
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


def test_a_go_binary_is_listed_with_its_main_module_licence(tmp_path: Path) -> None:
    """A Go build (the Kubernetes one takes minutes; this module has no dependencies) is one
    entry: its main module, with the LICENSE of that module found in the module cache."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "go.mod").write_text("module example.com/licencecheck\n\ngo 1.22\n")
    (source / "main.go").write_text('package main\n\nfunc main() { println("hello") }\n')
    binary = tmp_path / "cache" / "tool" / "1" / "bin" / "licencecheck"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    env["GOCACHE"] = str(cache_root() / "go" / "build")
    subprocess.run(
        ["go", "build", "-o", str(binary), "."], cwd=source, env=env, check=True, timeout=240
    )
    modcache = tmp_path / "mod"
    module = modcache / "example.com" / "licencecheck@(devel)"
    module.mkdir(parents=True)
    (module / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge")
    found = gobin.scan(tmp_path / "cache", modcache)
    assert [(b.item.name, b.item.version, b.item.licence) for b in found] == [
        ("example.com/licencecheck", "(devel)", "MIT")
    ]
    assert found[0].item.source == "tool/1/bin/licencecheck"
