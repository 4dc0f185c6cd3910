"""The component manager as a user meets it: CLI start/status/stop, cache reuse, no leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.components import get
from harness.components.base import pid_alive
from harness.components.manager import running
from harness.components.registry import FETCHABLE, get_fetchable
from harness.components.versions import OPENSEARCH


def test_cli_start_status_stop_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PHEE_STATE", str(tmp_path / "state"))
    assert main(["components", "start", "postgresql", "prometheus"]) == 0
    started = {run.name: run for run in running()}
    assert set(started) == {"postgresql", "prometheus"}
    assert all(pid_alive(run.pid) for run in started.values())

    assert main(["components", "status"]) == 0
    out = capsys.readouterr().out
    for name in FETCHABLE:
        assert f"  {name} " in out  # every component and artifact, with its pinned version
        assert get_fetchable(name).version in out
    assert "postgresql" in out.split("running:")[1]
    assert "alive" in out.split("running:")[1]

    # Starting what already runs is refused and changes nothing.
    assert main(["components", "start", "postgresql"]) == 1
    assert "already runs" in capsys.readouterr().err

    assert main(["components", "stop"]) == 0
    assert "stopped postgresql" in capsys.readouterr().out
    assert running() == []
    for run in started.values():
        assert not pid_alive(run.pid), f"{run.name} pid {run.pid} outlived stop"


def test_unknown_component_is_a_clear_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["components", "fetch", "oracle"]) == 1
    assert "unknown component 'oracle'; known: kafka, kafka-connect" in capsys.readouterr().err
    assert main(["components", "fetch", "postgresql", "oracle"]) == 1  # nothing half-done


@pytest.mark.parametrize("name", FETCHABLE)
def test_second_fetch_downloads_nothing(name: str) -> None:
    comp = get_fetchable(name)
    comp.fetch()  # cold machines download here (the test command fetched everything already)
    assert comp.is_cached()
    assert comp.fetch() is False


def test_a_real_server_that_cannot_start_fails_loudly_with_its_log(tmp_path: Path) -> None:
    """OpenSearch told to use a port that is taken exits; the error quotes its own log."""
    import socket

    from harness.components import StartError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StartError) as info:
            get("opensearch").start(tmp_path, settings={"http.port": port})
    message = str(info.value)
    assert f"opensearch {OPENSEARCH} exited with code" in message
    assert "BindTransportException" in message or "Address already in use" in message
