"""`make site` fetches what the site runs and nothing else: no Kubernetes build, no test-only
components; `phee site up` fetches it before it starts anything."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from harness import site
from harness.components import manager
from harness.components.registry import FETCHABLE

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]


def test_the_site_fetches_its_servers_and_the_fspiop_documents_only() -> None:
    assert set(site.SITE_COMPONENTS) == {
        "kafka",
        "kafka-connect",
        "postgresql",
        "operaton",
        "opensearch",
        "prometheus",
        "api-snippets",
    }
    assert set(site.SITE_COMPONENTS) <= set(FETCHABLE)
    for test_only in ("kube", "servicemonitor-crd", "ttk", "mariadb"):
        assert test_only not in site.SITE_COMPONENTS


def test_site_up_fetches_exactly_its_components_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, object]] = []

    class Stop(Exception):
        pass

    def fake_start(workdir: Path, engine_names: list[str]) -> site.Site:
        calls.append(("start", engine_names))
        raise Stop

    monkeypatch.setattr(manager, "fetch", lambda names: calls.append(("fetch", names)))
    monkeypatch.setattr(site, "start", fake_start)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stop):
        site.up(tmp_path, engines=2, payments=0, duration_s=0)
    assert signal.getsignal(signal.SIGTERM) is handler  # a failed start restores it
    assert calls == [("fetch", site.SITE_COMPONENTS), ("start", ["engine-a", "engine-b"])]


def _rule(makefile: str, target: str) -> tuple[list[str], list[str]]:
    """A Makefile rule's prerequisites and recipe lines."""
    match = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)*)", makefile, re.MULTILINE)
    assert match, f"no rule for {target}"
    return match.group(1).split(), match.group(2).splitlines()


def test_make_site_does_not_fetch_everything() -> None:
    makefile = (REPO / "Makefile").read_text()
    prerequisites, recipe = _rule(makefile, "site")
    assert prerequisites == ["bootstrap"]
    assert recipe == ["\t$(UV_RUN) phee site up $(SITE_ARGS)"]
    # the tiers that need every component still fetch them all
    assert "fetch" in _rule(makefile, "test")[0]
