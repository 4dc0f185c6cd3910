"""`python -m backoffice.audit_cli verify --tenant T`: check a tenant's audit log for tampering.

Exit 0 when the log is intact, 1 when something was found (one line per finding), 2 when the
check could not run (bad arguments, settings or URL, unknown tenant, database unreachable), so
a cron job or an operator can tell "tampered" from "could not look".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from backoffice.audit import check
from backoffice.db import Database, DatabaseError
from backoffice.settings import BackofficeSettings
from phee.service.startup import settings_problems


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backoffice.audit_cli", description="Check the back office's audit log."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify",
        help="verify one tenant's hash chain",
        description="Key and database come from PHEE_BACKOFFICE_AUDIT_KEY and "
        "PHEE_BACKOFFICE_DATABASE_URL. Exit 0 intact, 1 problems found, 2 could not check.",
    )
    verify.add_argument("--tenant", required=True, help="the tenant whose log to check")
    verify.add_argument("--database-url", help="SQLAlchemy URL (default: from the settings)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on bad arguments (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        settings = BackofficeSettings()
    except ValidationError as err:
        why = "; ".join(settings_problems(BackofficeSettings, err))
        return _fail(f"the back office settings are not valid: {why}")
    url: str = args.database_url or settings.database_url
    key = settings.secret("audit_key")
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            return _fail(f"no SQLite database at {parsed.database!r}")
        db = Database(url)
    except (ArgumentError, ValueError, SQLAlchemyError) as err:
        return _fail(f"bad database URL {_safe(url)}: {err}")
    try:
        if args.tenant not in db.provisioned():
            return _fail(f"unknown tenant {args.tenant!r} (not provisioned in {_safe(url)})")
        report = check(db, args.tenant, key.encode())
    except (DatabaseError, SQLAlchemyError) as err:
        return _fail(f"cannot read the audit log from {_safe(url)}: {err}")
    finally:
        db.close()
    for finding in report.findings:
        print(f"{finding.kind.upper()} seq {finding.seq}: {finding.message}")
    problems = len(report.findings)
    print(
        f"audit log of tenant {report.tenant}: {report.entries} entries, "
        f"{problems} problem{'' if problems == 1 else 's'}"
    )
    return 1 if problems else 0


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
