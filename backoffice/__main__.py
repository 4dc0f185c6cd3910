"""`python -m backoffice importer|api|migrate`: the back office's processes and chores.

Settings come from `PHEE_BACKOFFICE_*` (backoffice/settings.py); services listen on
127.0.0.1:$PHEE_PORT. The audit check is `python -m backoffice.audit_cli verify --tenant T`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backoffice", description=__doc__)
    parser.add_argument(
        "command",
        choices=["importer", "api", "migrate"],
        help="importer: Kafka -> SQL + OpenSearch; api: the operations API; "
        "migrate: create and migrate the control and tenant schemas, then exit",
    )
    args = parser.parse_args(argv)
    from backoffice.settings import BackofficeSettings
    from phee.service import load_settings

    settings = load_settings(BackofficeSettings, f"back office {args.command}")
    if args.command == "importer":
        from backoffice.service import create_app
        from phee.service import serve

        serve(create_app(settings), settings.service)
    elif args.command == "api":
        from backoffice import api

        api.main()
    else:
        from backoffice.db import Database

        db = Database(settings.database_url)
        db.migrate_control()
        for tenant in settings.tenants:
            print(f"tenant {tenant}: {db.namespace(tenant)} at revision {db.provision(tenant)}")
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
