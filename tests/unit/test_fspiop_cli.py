"""Every SDK vector reproduced through the `phee fspiop` command an engineer would type."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main

VECTORS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "mojaloop-sdk-19.19.1.json"
)


def _vectors() -> dict[str, Any]:
    if not VECTORS.exists():
        pytest.fail(f"SDK vectors missing: expected {VECTORS}")
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


#: stands in for the cases when the vector file is missing, so the tests fail instead of vanishing
_MISSING: list[tuple[int, dict[str, Any]]] = [(-1, {"validBySdk": True})]


def _ilp_cases() -> list[tuple[int, dict[str, Any]]]:
    if not VECTORS.exists():
        return _MISSING
    return list(enumerate(json.loads(VECTORS.read_text())["ilp"]))


def _jws_cases() -> list[tuple[int, dict[str, Any]]]:
    if not VECTORS.exists():
        return _MISSING
    return list(enumerate(json.loads(VECTORS.read_text())["jws"]["cases"]))


def test_vector_file_is_there_and_complete() -> None:
    data = _vectors()
    assert len(data["ilp"]) == 12
    assert len(data["jws"]["cases"]) == 18


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


@pytest.mark.parametrize("version", ["1", "4"])
@pytest.mark.parametrize(("index", "case"), _ilp_cases())
def test_ilp_vectors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    index: int,
    case: dict[str, Any],
    version: str,
) -> None:
    _vectors()
    tx = tmp_path / "tx.json"
    tx.write_text(json.dumps(case["transactionObject"]))
    code, out = _run(
        capsys,
        [
            "fspiop",
            "ilp",
            "--transaction",
            str(tx),
            "--secret",
            case["secret"],
            "--ilp-version",
            version,
        ],
    )
    assert code == 0
    expected = case[f"v{version}"]
    got = json.loads(out)
    assert got["ilpPacket"] == expected["ilpPacket"]
    assert got["condition"] == expected["condition"]
    assert got["fulfilment"] == expected["fulfilment"]

    code, out = _run(
        capsys, ["fspiop", "ilp-decode", expected["ilpPacket"], "--secret", case["secret"]]
    )
    assert code == 0
    decoded = json.loads(out)
    assert decoded["version"] == int(version)
    assert decoded["transaction"]["transactionId"] == case["transactionObject"]["transactionId"]
    assert decoded["fulfilment"] == expected["fulfilment"]


@pytest.mark.parametrize("body_mode", ["raw", "sdk"])
@pytest.mark.parametrize(("index", "case"), _jws_cases())
def test_jws_verdicts(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    index: int,
    case: dict[str, Any],
    body_mode: str,
) -> None:
    key = tmp_path / "public.pem"
    key.write_text(_vectors()["jws"]["publicKeyPem"])
    req = tmp_path / "request.json"
    req.write_text(json.dumps(case))
    code, out = _run(
        capsys,
        [
            "fspiop",
            "jws-verify",
            "--key",
            str(key),
            "--request",
            str(req),
            "--body-mode",
            body_mode,
        ],
    )
    if case["validBySdk"]:
        assert (code, out.strip()) == (0, "valid")
    else:
        assert code == 1
        assert out.startswith("invalid: ")


@pytest.mark.parametrize(("index", "case"), [(i, c) for i, c in _jws_cases() if c["validBySdk"]])
def test_jws_sign_reproduces_the_sdk_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], index: int, case: dict[str, Any]
) -> None:
    key = tmp_path / "private.pem"
    key.write_text(_vectors()["jws"]["privateKeyPem"])  # fails loudly when the file is missing
    unsigned = {
        **case,
        "headers": {k: v for k, v in case["headers"].items() if k != "fspiop-signature"},
    }
    req = tmp_path / "request.json"
    req.write_text(json.dumps(unsigned))
    code, out = _run(capsys, ["fspiop", "jws-sign", "--key", str(key), "--request", str(req)])
    assert code == 0
    assert out.strip() == case["headers"]["fspiop-signature"]


def test_bad_input_is_a_clear_error_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fspiop", "ilp-decode", "not-a-packet!"]) == 2
    assert "phee fspiop:" in capsys.readouterr().err
    missing = tmp_path / "nope.json"
    assert main(["fspiop", "ilp", "--transaction", str(missing), "--secret", "s3cret-value"]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["fspiop", "jws-verify", "--key", str(bad), "--request", str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_the_installed_command_runs() -> None:
    """The same through a real process, as an engineer types it."""
    case = _vectors()["ilp"][0]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "fspiop",
            "ilp",
            "--transaction",
            "-",
            "--secret",
            case["secret"],
        ],
        input=json.dumps(case["transactionObject"]),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["condition"] == case["v1"]["condition"]
