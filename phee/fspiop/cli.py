"""`phee fspiop`: the FSPIOP toolbox for engineers debugging a scheme connection.

    phee fspiop ilp --transaction tx.json --secret S [--ilp-version 1|4]
    phee fspiop ilp-decode PACKET
    phee fspiop jws-sign --key private.pem --request req.json
    phee fspiop jws-verify --key public.pem --request req.json [--body-mode raw|sdk]

A request file is JSON: {"method", "path", "headers": {...}, "bodyText": "<raw body>"} (the
shape of the SDK vectors; "body" with a JSON value is accepted and sent canonical).
Exit codes: 0 ok/valid, 1 invalid (with the reason), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from phee.fspiop import ilp, jws


class CliInputError(Exception):
    """Input the command cannot use (missing file, bad JSON, wrong shape)."""


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as err:
        raise CliInputError(f"cannot read {path}: {err.strerror}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CliInputError(f"{path} is not JSON: {err}") from err


def _read_key(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise CliInputError(f"cannot read key {path}: {err.strerror}") from err


def _request(path: str) -> tuple[str, str, dict[str, str], bytes]:
    req = _read_json(path)
    if not isinstance(req, dict) or not {"method", "path", "headers"} <= set(req):
        raise CliInputError(f"{path} needs method, path, headers and bodyText (or body)")
    if "bodyText" in req:
        body = str(req["bodyText"]).encode()
    elif "body" in req:
        body = jws.canonical_body(req["body"])
    else:
        body = b""
    headers = {str(k): str(v) for k, v in dict(req["headers"]).items()}
    return str(req["method"]), str(req["path"]), headers, body


def _cmd_ilp(args: argparse.Namespace) -> int:
    transaction = _read_json(args.transaction)
    make = ilp.v4_response if args.ilp_version == "4" else ilp.v1_response
    result = make(transaction, args.secret)
    print(
        json.dumps(
            {
                "ilpPacket": result.packet,
                "condition": result.condition,
                "fulfilment": result.fulfilment,
            },
            indent=2,
        )
    )
    return 0


def _cmd_ilp_decode(args: argparse.Namespace) -> int:
    packet = ilp.decode(args.packet)
    out: dict[str, Any] = {
        "version": packet.version,
        "amount": packet.amount,
        "address": packet.address,
        "transaction": packet.transaction,
    }
    if packet.expires_at is not None:
        out["expiresAt"] = packet.expires_at.isoformat()
    if packet.condition is not None:
        out["condition"] = packet.condition
    if args.secret:
        out["fulfilment"] = ilp.fulfilment_for_packet(args.packet, args.secret)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _cmd_jws_sign(args: argparse.Namespace) -> int:
    method, path, headers, body = _request(args.request)
    print(
        jws.sign(
            method=method, uri=path, headers=headers, body=body, private_key_pem=_read_key(args.key)
        )
    )
    return 0


def _cmd_jws_verify(args: argparse.Namespace) -> int:
    method, path, headers, body = _request(args.request)
    try:
        jws.verify(
            method=method,
            path=path,
            headers=headers,
            body=body,
            public_key_pem=_read_key(args.key),
            body_mode=args.body_mode,
        )
    except jws.JwsError as err:
        print(f"invalid: {err.reason}")
        return 1
    print("valid")
    return 0


def add_parser(sub: Any) -> None:
    """Attach `fspiop` and its subcommands to the `phee` parser."""
    fspiop = sub.add_parser("fspiop", help="ILP and JWS tools for FSPIOP debugging")
    fsub = fspiop.add_subparsers(dest="action", required=True)
    p = fsub.add_parser("ilp", help="transaction object -> ilpPacket, condition, fulfilment")
    p.add_argument(
        "--transaction", required=True, help="JSON file with the transaction object, or -"
    )
    p.add_argument("--secret", required=True, help="the ILP secret")
    p.add_argument("--ilp-version", choices=["1", "4"], default="1")
    p.set_defaults(func=_cmd_ilp)
    p = fsub.add_parser("ilp-decode", help="decode an ILP packet (v1 or v4)")
    p.add_argument("packet")
    p.add_argument("--secret", help="also print the fulfilment this secret gives")
    p.set_defaults(func=_cmd_ilp_decode)
    p = fsub.add_parser("jws-sign", help="FSPIOP-Signature for a request file")
    p.add_argument("--key", required=True, help="private key PEM (RSA: RS256, EC P-256: ES256)")
    p.add_argument("--request", required=True, help="request JSON file, or -")
    p.set_defaults(func=_cmd_jws_sign)
    p = fsub.add_parser("jws-verify", help="check a request file's FSPIOP-Signature")
    p.add_argument("--key", required=True, help="the signer's public key or certificate PEM")
    p.add_argument("--request", required=True, help="request JSON file, or -")
    p.add_argument(
        "--body-mode",
        choices=["raw", "sdk"],
        default="raw",
        help="raw: bytes as received; sdk: re-serialised with sorted keys like SDK 19.19",
    )
    p.set_defaults(func=_cmd_jws_verify)


def run(args: argparse.Namespace) -> int:
    """Run a parsed `fspiop` command, mapping bad input to exit code 2 with a message."""
    try:
        return int(args.func(args))
    except CliInputError as err:
        print(f"phee fspiop: {err}", file=sys.stderr)
        return 2
    except (ilp.IlpError, ValueError) as err:
        print(f"phee fspiop: {err}", file=sys.stderr)
        return 2
