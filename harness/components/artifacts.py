"""Pinned files (not servers) that phee reads at run time, fetched like the components."""

from __future__ import annotations

from pathlib import Path

from harness.components import fetchers
from harness.components.base import Artifact, FetchError
from harness.components.versions import API_SNIPPETS

_SNIPPETS_PACKAGE = "@mojaloop/api-snippets"


class ApiSnippets(Artifact):
    """`@mojaloop/api-snippets`: the FSPIOP OpenAPI documents our validation uses."""

    name = "api-snippets"
    version = API_SNIPPETS

    @property
    def docs(self) -> Path:
        return self.cache_dir / "node_modules" / "@mojaloop" / "api-snippets" / "docs"

    def schemas_env(self) -> dict[str, str]:
        """Fetch once, then the setting that points a service's FSPIOP validation here."""
        self.fetch()
        return {"PHEE_FSPIOP_SCHEMAS_DIR": str(self.docs)}

    def _fetch(self) -> None:
        fetchers.npm_install([f"{_SNIPPETS_PACKAGE}@{self.version}"], self.cache_dir)
        if not (self.docs / "fspiop-rest-v1.1-openapi3-snippets.yaml").exists():
            raise FetchError(f"{_SNIPPETS_PACKAGE}@{self.version} installed without its docs/")
