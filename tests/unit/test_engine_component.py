"""The engine component's build inputs: pinned versions agree, the cache key follows sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.components import registry
from harness.components.operaton import ENGINE_SOURCES, Operaton, sources_hash
from harness.components.versions import OPERATON, SPRING_BOOT

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def test_pom_names_the_pinned_versions() -> None:
    pom = (ENGINE_SOURCES / "pom.xml").read_text()
    assert f"<operaton.version>{OPERATON}</operaton.version>" in pom
    assert f"<version>{SPRING_BOOT}</version>" in pom


def test_cache_folder_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHEE_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "engine"
    shutil.copytree(ENGINE_SOURCES, copy, ignore=shutil.ignore_patterns("target"))
    before = Operaton(copy).cache_dir
    assert before.parent == tmp_path / "cache" / "operaton"
    assert before.name == f"{OPERATON}-{sources_hash(copy)}"
    assert sources_hash(copy) == sources_hash(ENGINE_SOURCES)
    yaml = copy / "src" / "main" / "resources" / "application.yaml"
    yaml.write_text(yaml.read_text() + "\n# changed\n")
    assert Operaton(copy).cache_dir != before
    assert not Operaton(copy).is_cached()


def test_fetch_lists_the_engine() -> None:
    assert "operaton" in registry.FETCHABLE
    assert registry.get("operaton").name == "operaton"
