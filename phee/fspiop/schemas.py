"""Validation of FSPIOP bodies against Mojaloop's official OpenAPI documents.

The documents come from `@mojaloop/api-snippets` (pinned, never committed): its `docs/` folder,
found through `PHEE_FSPIOP_SCHEMAS_DIR` (an image copies it in; the local harness fetches it into
its cache and passes the path). Nothing here fetches anything.

For a request we find the operation by method and path template, take its request body schema
and validate with `jsonschema`. Failures become FSPIOP errors that name the field: 3102 for a
missing mandatory element, 3100 for anything else.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import regex
import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from pydantic_settings import BaseSettings, SettingsConfigDict
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from phee.fspiop.errors import FspiopError

SCHEMAS_DIR_ENV = "PHEE_FSPIOP_SCHEMAS_DIR"


class SchemasNotFound(RuntimeError):
    """The FSPIOP OpenAPI documents are not where the settings say."""


class FspiopSchemaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHEE_FSPIOP_", extra="ignore")

    #: the `docs/` folder of `@mojaloop/api-snippets` (holds fspiop-rest-v*-openapi3-*.yaml)
    schemas_dir: Path | None = None


def openapi_path(docs_dir: Path | None, version: str) -> Path:
    """The OpenAPI document of one FSPIOP version ("1.0", "1.1" or "2.0") in `docs_dir`."""
    if docs_dir is None:
        raise SchemasNotFound(
            f"{SCHEMAS_DIR_ENV} is not set: point it at the docs/ folder of "
            "@mojaloop/api-snippets (`phee components fetch api-snippets` fetches it)"
        )
    path = docs_dir / f"fspiop-rest-v{version}-openapi3-snippets.yaml"
    if not path.is_file():
        raise SchemasNotFound(f"{SCHEMAS_DIR_ENV}={docs_dir} holds no OpenAPI for FSPIOP {version}")
    return path


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """`pattern` with Unicode property classes (`\\p{L}`), as the official schemas use.

    The FSPIOP documents are written for ECMAScript regular expressions; Python's `re` cannot
    compile their name patterns, the `regex` module can.
    """
    if isinstance(instance, str) and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with the Unicode-aware `pattern` keyword
FspiopValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _pattern}
)


@dataclass(frozen=True)
class _Operation:
    template: str
    pattern: re.Pattern[str]
    literals: int
    method: str
    body_ref: str | None


class FspiopSchemas:
    """The OpenAPI of one FSPIOP version, ready to validate request bodies."""

    def __init__(self, version: str, docs_dir: Path | None) -> None:
        self.version = version
        self._path = openapi_path(docs_dir, version)
        self._base = f"urn:fspiop:{version}"

    @cached_property
    def _document(self) -> dict[str, Any]:
        with self._path.open() as handle:
            doc: dict[str, Any] = yaml.safe_load(handle)
        return doc

    @cached_property
    def _registry(self) -> Registry[Any]:
        resource: Resource[Any] = Resource.from_contents(
            self._document, default_specification=DRAFT202012
        )
        registry: Registry[Any] = Registry().with_resource(self._base, resource)
        return registry

    @cached_property
    def _operations(self) -> list[_Operation]:
        ops = []
        for template, item in self._document["paths"].items():
            regex = "^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"
            literals = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
            for method, op in item.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                ops.append(
                    _Operation(
                        template, re.compile(regex), literals, method.upper(), self._body_ref(op)
                    )
                )
        # More literal segments first: `/parties/{Type}/{ID}/error` before `.../{SubId}`.
        return sorted(ops, key=lambda o: -o.literals)

    def _body_ref(self, op: dict[str, Any]) -> str | None:
        body = op.get("requestBody")
        if body is None:
            return None
        if "$ref" in body:
            body = self._resolve(body["$ref"])
        for media in body.get("content", {}).values():
            schema = media.get("schema", {})
            ref = schema.get("$ref")
            return str(ref) if ref else None
        return None

    def _resolve(self, pointer: str) -> dict[str, Any]:
        node: Any = self._document
        for part in pointer.lstrip("#/").split("/"):
            node = node[part]
        result: dict[str, Any] = node
        return result

    def operation(self, method: str, path: str) -> _Operation:
        """The operation a request addresses; 3002 when the API has no such operation."""
        clean = path.split("?", 1)[0].rstrip("/") or "/"
        for op in self._operations:
            if op.method == method.upper() and op.pattern.match(clean):
                return op
        raise FspiopError("3002", f"{method.upper()} {clean} is not in FSPIOP {self.version}")

    def schema_name(self, method: str, path: str) -> str | None:
        """Name of the request body schema (e.g. `QuotesPostRequest`), or None for no body."""
        ref = self.operation(method, path).body_ref
        return ref.rsplit("/", 1)[-1] if ref else None

    def validate(self, method: str, path: str, body: Any) -> None:
        """Raise FspiopError (3102 or 3100, naming the field) unless `body` fits the schema."""
        op = self.operation(method, path)
        if op.body_ref is None:
            if body not in (None, b"", ""):
                raise FspiopError("3100", f"{method.upper()} {path} takes no body")
            return
        validator = self._validator(op.body_ref)
        error = best_match(validator.iter_errors(body))
        if error is not None:
            raise _as_fspiop(error)

    def _validator(self, ref: str) -> Any:
        with _LOCK:
            cache = self.__dict__.setdefault("_validators", {})
            if ref not in cache:
                cache[ref] = FspiopValidator({"$ref": self._base + ref}, registry=self._registry)
            return cache[ref]


_LOCK = threading.Lock()
_BY_VERSION: dict[str, FspiopSchemas] = {}


def schemas(version: str) -> FspiopSchemas:
    """The shared validator of one version, from `PHEE_FSPIOP_SCHEMAS_DIR` (loading a document
    takes a fraction of a second); SchemasNotFound when the setting is missing or wrong."""
    with _LOCK:
        if version not in _BY_VERSION:
            _BY_VERSION[version] = FspiopSchemas(version, FspiopSchemaSettings().schemas_dir)
        return _BY_VERSION[version]


def _field(error: ValidationError) -> str:
    return "/" + "/".join(str(p) for p in error.absolute_path)


def _as_fspiop(error: ValidationError) -> FspiopError:
    where = _field(error)
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [p for p in required if p not in error.instance]
        name = missing[0] if missing else "?"
        return FspiopError("3102", f"{where.rstrip('/')}/{name} is required")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        return FspiopError(
            "3100", f"{where.rstrip('/')}/{extra[0] if extra else '?'} is not allowed"
        )
    return FspiopError("3100", f"{where}: {error.message}")
