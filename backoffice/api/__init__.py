"""The back office operations API: search payments, read one payment's trail, read the audit log.

Every request is authenticated (`backoffice.auth`), names its tenant in `Platform-TenantId`,
and that tenant must be the credentials' own; every query then runs on
`Database.tenant(conn, principal.tenant)`, so no request can read another tenant's schema.
Errors, 4xx and 5xx alike, carry FSPIOP's `errorInformation` body, as the rest of the hub does.
Each successful detail view is an operator action reported to the audit trail.

* `models`: the answers' and the query parameters' pydantic models;
* `deps`: the caller, its tenant and role (FastAPI dependencies), the operator-action hook;
* `errors`: FSPIOP error bodies, validation errors as 400s;
* `routes`: the endpoints, `create_app` and `main`.
"""

from backoffice.api.routes import create_app, main

__all__ = ["create_app", "main"]
