"""FSPIOP error codes and the `errorInformation` body every error carries.

Synchronous validation failures are answered with HTTP 4xx and this body; asynchronous ones go
back as `PUT .../error` callbacks with the same body. Descriptions follow the FSPIOP API
definition's wording so peers' logs read the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: code -> standard description (FSPIOP API definition, section "Error Codes")
CODES: dict[str, str] = {
    "1000": "Communication error",
    "1001": "Destination communication error",
    "2000": "Generic server error",
    "2001": "Internal server error",
    "2002": "Not implemented",
    "2003": "Service currently unavailable",
    "2004": "Server timed out",
    "2005": "Server busy",
    "3000": "Generic client error",
    "3001": "Unacceptable version requested",
    "3002": "Unknown URI",
    "3003": "Add Party information error",
    "3100": "Generic validation error",
    "3101": "Malformed syntax",
    "3102": "Missing mandatory element",
    "3103": "Too many elements",
    "3104": "Too large payload",
    "3105": "Invalid signature",
    "3106": "Modified request",
    "3107": "Missing mandatory extension parameter",
    "3200": "Generic ID not found",
    "3201": "Destination FSP Error",
    "3202": "Payer FSP ID not found",
    "3203": "Payee FSP ID not found",
    "3204": "Party not found",
    "3205": "Quote ID not found",
    "3206": "Transaction request ID not found",
    "3207": "Transaction ID not found",
    "3208": "Transfer ID not found",
    "3209": "Bulk quote ID not found",
    "3210": "Bulk transfer ID not found",
    "3300": "Generic expired error",
    "3301": "Transaction request expired",
    "3302": "Quote expired",
    "3303": "Transfer expired",
    "4000": "Generic Payer error",
    "4001": "Payer FSP insufficient liquidity",
    "4100": "Generic Payer rejection",
    "4101": "Payer rejected transaction request",
    "4102": "Payer FSP unsupported transaction type",
    "4103": "Payer unsupported currency",
    "4200": "Payer limit error",
    "4300": "Payer permission error",
    "4400": "Generic Payer blocked error",
    "5000": "Generic Payee error",
    "5001": "Payee FSP insufficient liquidity",
    "5100": "Generic Payee rejection",
    "5101": "Payee rejected quote",
    "5102": "Payee FSP unsupported transaction type",
    "5103": "Payee FSP rejected quote",
    "5104": "Payee rejected transaction",
    "5105": "Payee FSP rejected transaction",
    "5106": "Payee unsupported currency",
    "5200": "Payee limit error",
    "5300": "Payee permission error",
    "5400": "Generic Payee blocked error",
}

#: HTTP status for a code answered synchronously (everything else in 3xxx is a 400)
_HTTP_STATUS = {"3001": 406, "3002": 404, "3104": 413, "2001": 500, "2003": 503, "2005": 503}


@dataclass
class FspiopError(Exception):
    """An error with an FSPIOP code; `detail` names what was wrong (a header, a field, ...)."""

    code: str
    detail: str = ""
    extensions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown FSPIOP error code {self.code!r}")
        super().__init__(self.description)

    @property
    def description(self) -> str:
        base = CODES[self.code]
        return f"{base} - {self.detail}" if self.detail else base

    @property
    def http_status(self) -> int:
        if self.code in _HTTP_STATUS:
            return _HTTP_STATUS[self.code]
        if self.code.startswith("32"):  # an id that is not found, answered synchronously
            return 404
        return 400 if self.code.startswith("3") else 500

    def body(self) -> dict[str, Any]:
        """The `ErrorInformationObject` for an HTTP answer or a `PUT .../error` callback."""
        info: dict[str, Any] = {"errorCode": self.code, "errorDescription": self.description}
        if self.extensions:
            info["extensionList"] = {
                "extension": [{"key": k, "value": v} for k, v in self.extensions.items()]
            }
        return {"errorInformation": info}


def code_of(body: Any) -> str | None:
    """The error code inside an `ErrorInformationObject`, or None when it is not one."""
    if isinstance(body, dict):
        info = body.get("errorInformation")
        if isinstance(info, dict) and isinstance(info.get("errorCode"), str):
            return str(info["errorCode"])
    return None
