"""Every environment variable the operator sets on our containers is a setting the process reads,
and every secret a process needs comes from the hub's Kubernetes Secret, never as a literal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from phee_operator import engine_manifests as em
from phee_operator import hub_manifests as hm
from phee_operator.model import Engine, Hub, engine_of, hub_of
from phee_operator.settings import OperatorSettings
from pydantic_settings import BaseSettings

from backoffice.settings import BackofficeSettings
from callback_router.settings import RouterSettings
from engine_workers.settings import EngineSettings
from phee.fspiop.schemas import FspiopSchemaSettings
from phee.service import ComponentSettings, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]

#: the command a container runs -> the settings class its process loads
SETTINGS_BY_COMMAND: dict[str, type[ComponentSettings]] = {
    "engine_workers": EngineSettings,
    "callback_router": RouterSettings,
    "backoffice": BackofficeSettings,
}
#: settings every service reads besides its own
SHARED: tuple[type[BaseSettings], ...] = (ServiceSettings, FspiopSchemaSettings)
#: variables the operator sets ahead of the settings they are for (empty: every one is a setting)
PENDING_SETTINGS: dict[str, set[str]] = {}
#: secrets that come from the engine's own database Secret (<engine>-db), not the hub's
ENGINE_DB_SECRETS = {"PHEE_ENGINE_STORE_PASSWORD": "password"}


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables a settings class reads (its prefix + field, or the field's alias)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {
        str(field.validation_alias) if field.validation_alias else f"{prefix}{name}".upper()
        for name, field in cls.model_fields.items()
        if not field.exclude  # the nested shared part is read under its own names
    }


def _site(secret_name: str | None) -> tuple[Hub, list[Engine]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "crds/examples/site.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"].update(namespace="payments", uid=doc["metadata"]["name"], generation=1)
    (hub_doc,) = [d for d in docs if d["kind"] == "PaymentHub"]
    if secret_name is not None:
        hub_doc["spec"]["secretName"] = secret_name
    hub = hub_of(json.loads(json.dumps(hub_doc)))
    return hub, [engine_of(d) for d in docs if d["kind"] == "PaymentEngine"]


def our_containers(hub: Hub, engines: list[Engine]) -> list[tuple[str, dict[str, Any]]]:
    """(module run, container) for every container of the site that runs our Python code."""
    views = [hm.EngineView(e, ready=True) for e in engines]
    manifests = [*hm.hub_children(hub, views)]
    for engine in engines:
        manifests += em.engine_children(engine, hub, service_monitors=True)
    found = []
    for manifest in manifests:
        spec = manifest.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            command = container.get("command") or []
            if command[:2] == ["python", "-m"]:
                found.append((command[2], container))
    return found


@pytest.mark.parametrize("secret_name", [None, "acme-site-secrets"])
def test_every_variable_is_a_setting_and_every_secret_comes_from_the_secret(
    secret_name: str | None,
) -> None:
    hub, engines = _site(secret_name)
    containers = our_containers(hub, engines)
    assert sorted({module for module, _ in containers}) == sorted(SETTINGS_BY_COMMAND)
    expected_secret = secret_name or f"{hub.meta.name}-secrets"
    for module, container in containers:
        cls = SETTINGS_BY_COMMAND[module]
        known = env_names(cls).union(*(env_names(shared) for shared in SHARED))
        known |= PENDING_SETTINGS.get(module, set())
        env = {e["name"]: e for e in container["env"]}
        unknown = sorted(set(env) - known)
        assert not unknown, f"{container['name']}: {unknown} are not settings of {cls.__name__}"
        for name in {
            *cls.secret_env_names(),
            *(ENGINE_DB_SECRETS if module == "engine_workers" else ()),
        }:
            assert name in env, f"{container['name']}: secret {name} is not set"
            assert "value" not in env[name], f"{container['name']}: {name} is a literal"
            ref = env[name]["valueFrom"]["secretKeyRef"]
            if name in ENGINE_DB_SECRETS:
                engine = next(e for e in container["env"] if e["name"] == "PHEE_ENGINE_NAME")
                assert ref == {"name": f"{engine['value']}-db", "key": ENGINE_DB_SECRETS[name]}
                continue
            assert ref["name"] == expected_secret
            assert ref["key"] in {"ilp-secret", "router-admin-token", "audit-key"}


def test_engines_and_router_share_one_admin_token_and_engines_one_ilp_secret() -> None:
    hub, engines = _site(None)
    refs: dict[str, set[tuple[str, str]]] = {}
    for _, container in our_containers(hub, engines):
        for e in container["env"]:
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                refs.setdefault(e["name"], set()).add((ref["name"], ref["key"]))
    assert refs["PHEE_ENGINE_ILP_SECRET"] == {("acme-secrets", "ilp-secret")}
    assert refs["PHEE_ENGINE_ROUTER_ADMIN_TOKEN"] == refs["PHEE_ROUTER_ADMIN_TOKEN"]
    assert refs["PHEE_BACKOFFICE_AUDIT_KEY"] == {("acme-secrets", "audit-key")}


def test_the_settings_classes_declare_their_secrets() -> None:
    """The check above is only as good as these lists: a secret field must be declared."""
    assert EngineSettings.secret_env_names() == [
        "PHEE_ENGINE_ILP_SECRET",
        "PHEE_ENGINE_ROUTER_ADMIN_TOKEN",
    ]
    assert RouterSettings.secret_env_names() == ["PHEE_ROUTER_ADMIN_TOKEN"]
    assert BackofficeSettings.secret_env_names() == ["PHEE_BACKOFFICE_AUDIT_KEY"]
    for cls in SETTINGS_BY_COMMAND.values():
        secret_fields = {
            name for name, field in cls.model_fields.items() if "SecretStr" in str(field.annotation)
        }
        optional: frozenset[str] = getattr(cls, "optional_secrets", frozenset())
        assert secret_fields == set(cls.dev_secrets) | optional, cls.__name__


def test_the_operators_own_deployment_sets_only_its_settings() -> None:
    docs = yaml.safe_load_all((ROOT / "operator/deploy/deployment.yaml").read_text())
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "phee_operator"]
    names = {e["name"] for e in container["env"]}
    known = env_names(OperatorSettings) | env_names(ServiceSettings)
    assert names <= known, sorted(names - known)
    assert {"POD_NAME", "POD_NAMESPACE"} <= names
