"""Secrets have no usable defaults: a service started without its secret refuses to start and
names the setting; with the explicit development mode it starts (with public values)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.components import Running
from harness.components.operaton import RunningEngine
from harness.services import start_service, stop_service
from phee import contract

#: module (and arguments) -> the secret variables it must refuse to start without
SERVICES = {
    ("callback_router",): ["PHEE_ROUTER_ADMIN_TOKEN"],
    ("engine_workers",): ["PHEE_ENGINE_ILP_SECRET", "PHEE_ENGINE_ROUTER_ADMIN_TOKEN"],
    ("backoffice", "api"): ["PHEE_BACKOFFICE_AUDIT_KEY"],
    ("backoffice", "importer"): ["PHEE_BACKOFFICE_AUDIT_KEY"],
    ("backoffice", "migrate"): ["PHEE_BACKOFFICE_AUDIT_KEY"],
}


def _registry(path: Path) -> Path:
    registry = contract.EngineRegistry(
        engines=[
            contract.EngineInfo(
                name="engine-a", slot=1, engine_url="http://127.0.0.1:1/engine-rest"
            )
        ]
    )
    path.write_text(registry.model_dump_json())
    return path


def _settings_env(tmp_path: Path) -> dict[str, str]:
    """Everything each service needs except its secrets."""
    return {
        "PHEE_ROUTER_FSP_ID": "phee-dfsp",
        "PHEE_ROUTER_REGISTRY_FILE": str(_registry(tmp_path / "engines.json")),
        "PHEE_ROUTER_DATABASE_URL": f"sqlite:///{tmp_path / 'router.db'}",
        "PHEE_BACKOFFICE_DATABASE_URL": f"sqlite:///{tmp_path / 'bo.db'}",
        "PHEE_ENGINE_STORE_URL": f"sqlite:///{tmp_path / 'engine.db'}",
    }


def _without_phee(env: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any PHEE_ setting except where the schemas are."""
    return {
        k: v for k, v in env.items() if not k.startswith("PHEE_") or k == "PHEE_FSPIOP_SCHEMAS_DIR"
    }


@pytest.mark.parametrize(("command", "secrets"), list(SERVICES.items()))
def test_a_service_without_its_secret_refuses_to_start_and_names_it(
    command: tuple[str, ...], secrets: list[str], tmp_path: Path
) -> None:
    env = {**_without_phee(dict(os.environ)), **_settings_env(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot start:" in proc.stderr
    assert "not set, and secrets have no defaults" in proc.stderr
    for name in secrets:
        assert name in proc.stderr, proc.stderr
    assert "PHEE_DEV_MODE=true" in proc.stderr
    # it refused before touching anything
    assert not list(tmp_path.glob("*.db")), "a refused start created a database"


def test_with_the_development_mode_the_router_and_back_office_start(tmp_path: Path) -> None:
    env = {**_settings_env(tmp_path), "PHEE_DEV_MODE": "true"}
    started: list[Running] = []
    try:
        router = start_service("router-dev", "callback_router", tmp_path / "router", env=env)
        started.append(router)
        api = start_service("bo-api-dev", "backoffice", tmp_path / "bo", env=env, args=["api"])
        started.append(api)
        # the router's admin API takes the development token and nothing else
        dev_token = "phee-dev-router-admin-token"
        with httpx.Client(base_url=router.endpoint("http"), timeout=10) as http:
            assert http.get("/admin/engines").status_code == 401
            engines = http.get("/admin/engines", headers={"Authorization": f"Bearer {dev_token}"})
            assert engines.status_code == 200
            assert [e["name"] for e in engines.json()["engines"]] == ["engine-a"]
        with httpx.Client(base_url=api.endpoint("http"), timeout=10) as http:
            assert http.get("/readyz").status_code == 200
        for run in started:  # the log says so, naming what took a development value
            text = Path(run.log_path).read_text()
            assert "development mode: PHEE_" in text, text
    finally:
        for run in reversed(started):
            stop_service(run)


def test_with_the_development_mode_the_workers_start(
    tmp_path: Path, engine_a: RunningEngine
) -> None:
    env = {
        **_settings_env(tmp_path),
        "PHEE_DEV_MODE": "true",
        "PHEE_ENGINE_ENGINE_URL": engine_a.rest_urls[0],
    }
    workers = start_service("workers-dev", "engine_workers", tmp_path / "w", env=env)
    try:
        log = Path(workers.log_path).read_text()
        assert "development mode" in log
        # JSON lines: every line the workers logged parses, with the fields collectors need
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert lines, log
        assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    finally:
        stop_service(workers)
