"""Pinned files (not servers) that phee reads at run time, fetched like the components."""

from __future__ import annotations

from pathlib import Path

from phee.components import fetchers
from phee.components.base import Artifact, FetchError
from phee.components.versions import API_SNIPPETS

_SNIPPETS_PACKAGE = "@mojaloop/api-snippets"


class ApiSnippets(Artifact):
    """`@mojaloop/api-snippets`: the FSPIOP OpenAPI documents our validation uses."""

    name = "api-snippets"
    version = API_SNIPPETS

    @property
    def docs(self) -> Path:
        return self.cache_dir / "node_modules" / "@mojaloop" / "api-snippets" / "docs"

    def openapi(self, fspiop_version: str) -> Path:
        """The OpenAPI document of one FSPIOP version ("1.0", "1.1" or "2.0")."""
        path = self.docs / f"fspiop-rest-v{fspiop_version}-openapi3-snippets.yaml"
        if not path.exists():
            raise FetchError(
                f"{self.name} {self.version} has no OpenAPI for FSPIOP {fspiop_version}"
            )
        return path

    def _fetch(self) -> None:
        fetchers.npm_install([f"{_SNIPPETS_PACKAGE}@{self.version}"], self.cache_dir)
        if not (self.docs / "fspiop-rest-v1.1-openapi3-snippets.yaml").exists():
            raise FetchError(f"{_SNIPPETS_PACKAGE}@{self.version} installed without its docs/")
