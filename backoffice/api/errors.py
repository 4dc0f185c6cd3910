"""The operations API's errors: every 4xx and 5xx answer carries FSPIOP's `errorInformation`.

As the rest of the hub does, bad input is a 400 (3100 validation, 3101 syntax, 3102 missing),
never FastAPI's 422, both in the answers and in the OpenAPI document; credentials that fail are
a 401 with a `WWW-Authenticate` challenge or a 403; an unreachable identity provider or database
is a 503 (2003), worth a retry.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from backoffice.auth.principal import AuthError, KeysUnavailable
from backoffice.db import DatabaseError
from phee.fspiop.errors import FspiopError

log = logging.getLogger("backoffice.api")


class ErrorInformation(BaseModel):
    errorCode: str = Field(description="FSPIOP error code, e.g. 3100 (validation), 3101 (syntax)")
    errorDescription: str = Field(description="The code's meaning and what was wrong")


class ErrorBody(BaseModel):
    """FSPIOP's ErrorInformationObject, the body of every error answer."""

    errorInformation: ErrorInformation


#: the error answers every endpoint documents
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad parameter or header (3100, 3101, 3102)"},
    401: {"model": ErrorBody, "description": "Credentials missing, malformed, expired or forged"},
    403: {"model": ErrorBody, "description": "Another tenant's credentials, or a missing role"},
}
#: the error answers of an endpoint that reads one thing by its id
NOT_FOUND_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorBody, "description": "Not in this tenant (3200/3207)"},
}

_MALFORMED = {"malformed", "json_invalid", "string_pattern_mismatch", "timezone_aware"}


def _validation_code(kind: str) -> str:
    """3102 for a missing element, 3101 for text that does not parse, else 3100."""
    if kind == "missing":
        return "3102"
    if kind in _MALFORMED or kind.endswith(("_parsing", "_type")):
        return "3101"
    return "3100"


def _fspiop(
    code: str, detail: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(FspiopError(code, detail).body(), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error of `app` with an FSPIOP body, and document bad input as a 400."""
    _errors_are_400(app)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": exc.challenge()} if exc.status == 401 else None
        return _fspiop("3000", exc.message, exc.status, headers)

    @app.exception_handler(KeysUnavailable)
    async def keys_unavailable(request: Request, exc: KeysUnavailable) -> JSONResponse:
        log.warning("identity provider unreachable: %s", exc)
        return _fspiop("2003", "the identity provider's keys cannot be fetched", 503)

    @app.exception_handler(FspiopError)
    async def fspiop_error(request: Request, exc: FspiopError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = []
        for err in errors[:5]:
            where = "/".join(str(p) for p in err["loc"][1:])
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "is not a parameter of this endpoint"
            problems.append(f"{where}: {message}" if where else message)
        err = FspiopError(_validation_code(str(errors[0]["type"])), "; ".join(problems))
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "3002" if exc.status_code == 404 else "3000"
        return _fspiop(code, str(exc.detail), exc.status_code, dict(exc.headers or {}) or None)

    @app.exception_handler(DatabaseError)
    async def database_error(request: Request, exc: DatabaseError) -> JSONResponse:
        log.error("database error: %s", exc)
        if exc.retryable:
            return _fspiop("2003", "the database is unavailable, try again", 503)
        return _fspiop("2001", "the database failed", 500)


def _errors_are_400(app: FastAPI) -> None:
    """Drop FastAPI's generated 422 answers from the document: bad input is a 400 here."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = document.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
