"""A contract type for import-linter: named callables used only where they belong.

Import rules see modules, not names, so "SQL engines are created only in the plumbing module"
needs this: it reads the source of every module under `source_modules` and reports each use of
a name in `names` (called, imported or referenced, `sqlalchemy.create_engine` as well as a bare
`create_engine`) outside `allowed_modules`. Configured in pyproject.toml, run by `lint-imports`.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


@dataclass(frozen=True)
class Use:
    module: str
    line: int
    name: str


def _source(module: str) -> Path | None:
    """The file of `module`, found from its root package without importing the module."""
    root, *rest = module.split(".")
    spec = importlib.util.find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def uses(module: str, source: str, names: frozenset[str]) -> list[Use]:
    """Every reference to one of `names` in a module's source (attribute, name or import)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in names:
            found.append(Use(module, node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and node.attr in names:
            found.append(Use(module, node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            found.extend(Use(module, node.lineno, a.name) for a in node.names if a.name in names)
    return found


def _within(module: str, packages: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


class ForbiddenNamesContract(Contract):
    """`names` may be used only in `allowed_modules` (within `source_modules`)."""

    type_name = "forbidden_names"

    source_modules = fields.ListField(subfield=fields.StringField())
    names = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def _option(self, name: str) -> list[str]:
        """A parsed option (the fields above are replaced by their values on the instance)."""
        return [str(v) for v in getattr(self, name)]

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        sources, allowed = self._option("source_modules"), self._option("allowed_modules")
        names = frozenset(self._option("names"))
        found: list[Use] = []
        for module in sorted(graph.modules):
            if not _within(module, sources) or module in allowed:
                continue
            path = _source(module)
            if path is not None:
                found.extend(uses(module, path.read_text(), names))
        return ContractCheck(kept=not found, metadata={"uses": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        allowed = ", ".join(self._option("allowed_modules"))
        for use in check.metadata["uses"]:
            output.print_error(f"{use.module}:{use.line} uses {use.name} (only {allowed} may)")
            output.new_line()
