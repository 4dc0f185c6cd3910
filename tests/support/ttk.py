"""A small client for the Testing Toolkit's admin API (rules, history, outbound test runs).

Rules: the TTK evaluates exactly one active file per kind (`callback`, `validation`, ...), the
first rule in the file having the highest priority. `TtkAdmin.rules` puts a few specific rules in
front of the TTK's own default file for one test and restores the default afterwards, so a test
never inherits another's rules.

Observation: `/api/history/requests` holds what the TTK received (after its schema validation),
`/api/history/callbacks` what it sent back; both are in memory and expire after ten minutes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.components import Running

RESOURCES = Path(__file__).resolve().parent.parent / "resources" / "ttk"
DEFAULT_RULES = "default.json"
RULE_KINDS = ("callback", "validation")


def resource(name: str) -> Any:
    """A JSON file from tests/resources/ttk."""
    return json.loads((RESOURCES / name).read_text())


@dataclass(frozen=True)
class AssertionResult:
    """One assertion of a TTK test run."""

    request: str  # "<method> <operationPath> (<description>)"
    assertion: str
    status: str  # SUCCESS, FAILED or SKIPPED
    message: str

    def __str__(self) -> str:
        text = f"{self.status:<7} {self.request}: {self.assertion}"
        return f"{text}: {self.message}" if self.message else text


class TtkAdmin:
    """The admin API (port 5050 upstream) of one running TTK."""

    def __init__(self, ttk: Running, timeout_s: float = 30.0) -> None:
        self.ttk = ttk
        self.http = httpx.Client(base_url=ttk.endpoint("admin"), timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    # --- rules -------------------------------------------------------------------------
    def rule_file(self, kind: str, name: str = DEFAULT_RULES) -> list[dict[str, Any]]:
        resp = self.http.get(f"/api/rules/files/{kind}/{name}")
        resp.raise_for_status()
        rules = resp.json()
        assert isinstance(rules, list), rules
        return rules

    def put_rule_file(self, kind: str, name: str, rules: list[dict[str, Any]]) -> None:
        self.http.put(f"/api/rules/files/{kind}/{name}", json=rules).raise_for_status()

    def activate(self, kind: str, name: str) -> None:
        self.http.put(
            f"/api/rules/files/{kind}", json={"type": "activeRulesFile", "fileName": name}
        ).raise_for_status()

    def active(self, kind: str) -> str:
        resp = self.http.get(f"/api/rules/files/{kind}")
        resp.raise_for_status()
        return str(resp.json()["activeRulesFile"])

    @contextmanager
    def rules(self, kind: str, specific: list[dict[str, Any]]) -> Iterator[str]:
        """Activate `specific` rules ahead of the default ones; restore the default after."""
        if kind not in RULE_KINDS:
            raise ValueError(f"unknown rule kind {kind!r}")
        name = f"phee-{secrets.token_hex(4)}.json"
        self.put_rule_file(kind, name, [*specific, *self.rule_file(kind)])
        self.activate(kind, name)
        try:
            yield name
        finally:
            self.activate(kind, DEFAULT_RULES)
            self.http.delete(f"/api/rules/files/{kind}/{name}")

    # --- history -----------------------------------------------------------------------
    def received(self) -> list[dict[str, Any]]:
        """Requests the TTK accepted (method lower-case, path, headers, body)."""
        resp = self.http.get("/api/history/requests")
        resp.raise_for_status()
        return list(resp.json())

    def sent_callbacks(self) -> list[dict[str, Any]]:
        """Callbacks the TTK sent (url, method, path, headers, body)."""
        resp = self.http.get("/api/history/callbacks")
        resp.raise_for_status()
        return list(resp.json())

    # --- outbound test runs ------------------------------------------------------------
    def run_collection(
        self, collection: dict[str, Any], environment: dict[str, Any], timeout_s: float = 120
    ) -> dict[str, Any]:
        """Run a collection synchronously against CALLBACK_ENDPOINT; the TTK's full report.

        Input values: the collection's own, overridden by the environment's (as the TTK's CLI
        does with `-e`).
        """
        template = {
            **collection,
            "inputValues": {
                **collection.get("inputValues", {}),
                **environment.get("inputValues", environment),
            },
        }
        trace = secrets.token_hex(16)  # the TTK wants a 32 hex digit trace id
        resp = self.http.post(
            f"/api/outbound/template/{trace}",
            params={"sync": "true"},
            json=template,
            timeout=timeout_s,
        )
        resp.raise_for_status()
        report = resp.json()
        if not isinstance(report, dict) or "runtimeInformation" not in report:
            raise AssertionError(f"the TTK ran no report: {report!r}")
        return report


def assertion_results(report: dict[str, Any]) -> list[AssertionResult]:
    """Every assertion of a sync run report, in order."""
    out: list[AssertionResult] = []
    for case in report["test_cases"]:
        for item in case["requests"]:
            req = item.get("request") or {}
            name = f"{req.get('method')} {req.get('operationPath')} ({req.get('description')})"
            for a in (req.get("tests") or {}).get("assertions", []):
                result = a.get("resultStatus") or {}
                out.append(
                    AssertionResult(
                        request=name,
                        assertion=str(a.get("description")),
                        status=str(result.get("status", "MISSING")),
                        message=str(result.get("message") or ""),
                    )
                )
    return out


def request_summary(report: dict[str, Any]) -> list[str]:
    """What each request got back (sync status, callback path and body), for failure output."""
    lines = []
    for case in report["test_cases"]:
        for item in case["requests"]:
            req = item.get("request") or {}
            resp = item.get("response") or {}
            cb = item.get("callback") or {}
            lines.append(
                f"{req.get('method')} {req.get('path') or req.get('operationPath')} -> "
                f"{resp.get('status')} {json.dumps(resp.get('body'))[:300]}; callback "
                f"{cb.get('url')} {json.dumps(cb.get('body'))[:600]}"
            )
    return lines
