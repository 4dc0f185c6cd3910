"""FSPIOP HTTP headers: media types with versions, negotiation, and the mandatory set.

Content-Type and Accept look like
`application/vnd.interoperability.<resource>+json;version=<major.minor>`. A receiver answers
406 with error 3001 when the version asked for is not served. PUT callbacks carry no Accept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime, formatdate

from phee.fspiop.errors import FspiopError

#: FSPIOP versions we speak; 1.0 and 1.1 share a wire format (the Testing Toolkit sends 1.0)
SUPPORTED_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "2.0")
RESOURCES = (
    "participants",
    "parties",
    "quotes",
    "transfers",
    "transactionRequests",
    "authorizations",
    "bulkQuotes",
    "bulkTransfers",
    "fxQuotes",
    "fxTransfers",
)
_MEDIA = re.compile(
    r"^application/vnd\.interoperability\.(?P<resource>[A-Za-z]+)\+json"
    r"\s*(;\s*version\s*=\s*(?P<version>[0-9]+(\.[0-9]+)?))?\s*$"
)
MAX_BODY_BYTES = 5 * 1024 * 1024


def media_type(resource: str, version: str) -> str:
    """The Content-Type/Accept value for `resource` at `version`."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown FSPIOP resource {resource!r}")
    return f"application/vnd.interoperability.{resource}+json;version={version}"


def resource_of(path: str) -> str:
    """The FSPIOP resource a request path belongs to (`/transfers/ID` -> `transfers`)."""
    first = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    if first not in RESOURCES:
        raise FspiopError("3002", f"{path} is not an FSPIOP resource")
    return first


def parse_media_type(value: str, header: str = "Content-Type") -> tuple[str, str | None]:
    """(resource, version) of an FSPIOP media type; 3101 naming the header when malformed."""
    match = _MEDIA.match(value.strip())
    if not match:
        raise FspiopError("3101", f"{header} {value!r} is not an FSPIOP media type")
    return match["resource"], match["version"]


def content_version(headers: Mapping[str, str], path: str) -> str:
    """The version of a body from its Content-Type; checks it names the path's resource."""
    value = get(headers, "Content-Type")
    if value is None:
        raise FspiopError("3102", "Content-Type header is missing")
    resource, version = parse_media_type(value)
    if resource != resource_of(path):
        raise FspiopError("3101", f"Content-Type names {resource}, the path {path}")
    if version is None:
        raise FspiopError("3101", "Content-Type has no version")
    if version not in SUPPORTED_VERSIONS:
        raise unsupported(version)
    return version


def negotiate(accept: str, path: str) -> str:
    """The version to answer with, from an Accept header (several values may be listed)."""
    resource = resource_of(path)
    asked: list[str] = []
    for part in accept.split(","):
        res, version = parse_media_type(part, "Accept")
        if res != resource:
            raise FspiopError("3101", f"Accept names {res}, the path {path}")
        if version is None:  # no version: the highest major we serve
            return SUPPORTED_VERSIONS[-1]
        asked.append(version)
        if version in SUPPORTED_VERSIONS:
            return version
        if "." not in version:  # a major alone: the newest minor of it we serve
            minors = [v for v in SUPPORTED_VERSIONS if v.startswith(version + ".")]
            if minors:
                return minors[-1]
    raise unsupported(", ".join(asked))


def unsupported(version: str) -> FspiopError:
    """406 + 3001 listing the versions we serve (as the API definition asks)."""
    served = {v.split(".")[0]: v for v in SUPPORTED_VERSIONS}
    return FspiopError(
        "3001",
        f"version {version} is not served",
        extensions={f"v{major}": v for major, v in served.items()},
    )


def missing_mandatory(method: str, headers: Mapping[str, str]) -> list[str]:
    """Names of the mandatory FSPIOP headers absent from a request."""
    wanted = ["Date", "FSPIOP-Source"]
    if method.upper() in ("POST", "PUT", "PATCH"):
        wanted.insert(0, "Content-Type")
    if method.upper() in ("GET", "POST"):
        wanted.insert(0, "Accept")
    return [name for name in wanted if not get(headers, name)]


def get(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup over any mapping."""
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def imf_date(when: datetime | None = None) -> str:
    """The Date header in IMF-fixdate (`Fri, 21 Nov 2026 08:00:00 GMT`)."""
    if when is None:
        return formatdate(usegmt=True)
    return format_datetime(when, usegmt=True)


def request_headers(
    *,
    method: str,
    path: str,
    source: str,
    destination: str | None,
    version: str = "1.1",
    date: str | None = None,
) -> dict[str, str]:
    """Headers for an outgoing request or callback (no Accept on PUT/PATCH callbacks)."""
    resource = resource_of(path)
    headers = {
        "Content-Type": media_type(resource, version),
        "Date": date or imf_date(),
        "FSPIOP-Source": source,
    }
    if method.upper() in ("GET", "POST"):
        headers["Accept"] = media_type(resource, version)
    if destination:
        headers["FSPIOP-Destination"] = destination
    return headers
