"""Service-account API keys from the command line (settings from `PHEE_BACKOFFICE_*`).

    python -m backoffice.apikeys create --tenant T --role operator --name N
    python -m backoffice.apikeys revoke KEY_ID
    python -m backoffice.apikeys list [--tenant T]

`create` prints the key on stdout, alone, once: only its hash is stored, so it cannot be shown
again (store it in the service's secret store straight away).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backoffice.auth.keystore import create_api_key, list_api_keys, revoke_api_key
from backoffice.auth.principal import ROLES
from backoffice.db import Database
from backoffice.settings import BackofficeSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backoffice.apikeys", description="Manage operations API keys."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="issue a key (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who or what uses the key")
    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    listing = sub.add_parser("list", help="every key's id, tenant, role, name (never a secret)")
    listing.add_argument("--tenant")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    db = Database(BackofficeSettings().database_url)
    try:
        db.migrate_control()
        if args.command == "create":
            if args.tenant not in db.provisioned():
                print(f"tenant {args.tenant!r} is not provisioned here", file=sys.stderr)
                return 2
            try:
                issued = create_api_key(db, tenant=args.tenant, role=args.role, name=args.name)
            except ValueError as err:
                print(err, file=sys.stderr)
                return 2
            print(
                f"key {issued.key_id} for tenant {issued.tenant}, role {issued.role}; "
                "store it now, it is not shown again:",
                file=sys.stderr,
            )
            print(issued.key)
            return 0
        if args.command == "revoke":
            if not revoke_api_key(db, args.key_id):
                print(f"no live key {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}", file=sys.stderr)
            return 0
        for info in list_api_keys(db, args.tenant):
            state = f"revoked {info.revoked_at}" if info.revoked_at else "live"
            print(f"{info.key_id}  {info.tenant}  {info.role}  {info.name!r}  {state}")
        return 0
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
