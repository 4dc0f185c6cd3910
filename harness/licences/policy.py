"""The licence policy: spellings to canonical names, expressions to a verdict.

A licence string as found (a POM's `<name>`, an npm `license`, a Debian `License:` field, a
Python classifier, an SPDX expression) is split into alternatives (`OR`, `|`, ` / `, ` + `) and
conjunctions (`AND`); each term is matched against ordered patterns that name a canonical licence.
An alternative is accepted when any of its options is, a conjunction when all of its parts are.
Refused names are matched before accepted ones, so "AGPL" never reads as "GPL". docs/licences.md
states the policy in prose; the unit tests hold the table of spellings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    status: Status
    #: the canonical reading of the licence (e.g. "EPL-1.0 OR LGPL"), or "?" parts when unknown
    canonical: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.ACCEPTED


#: never acceptable, whatever else an expression offers alongside (checked before ACCEPTED)
REFUSED: tuple[tuple[str, str], ...] = (
    (r"\bagpl|affero", "AGPL-3.0"),
    (r"\bsspl|server side public", "SSPL-1.0"),
    (r"\bbusl|business source", "BUSL-1.1"),
    (r"elastic[- ]license|\belastic-[12]\.0|\belv2\b", "Elastic-2.0"),
    (r"commons[- ]clause", "Commons-Clause"),
    (r"zeebe community", "Zeebe-Community"),
    (r"\bcamunda\b", "Camunda-License"),
    (r"proprietary|commercial|\beula\b|vendor|all rights reserved|non-commercial", "Proprietary"),
)

#: OSI-approved (or public-domain) licences we take, by spelling; the first match wins
ACCEPTED: tuple[tuple[str, str], ...] = (
    (r"classpath|\bcpe\b|\+ce\b", "GPL-2.0-with-classpath-exception"),
    (r"\blgpl|lesser general public|library general public", "LGPL"),
    (r"eclipse distribution|\bedl\b", "EDL-1.0"),
    (r"eclipse public.*2\.0|\bepl[- ]?v?2|eclipse public license v2", "EPL-2.0"),
    (r"eclipse public|\bepl\b|\bepl[- ]?v?1", "EPL-1.0"),
    (r"\bcddl|common development and distribution", "CDDL"),
    (r"\bgpl|general public license", "GPL"),
    (r"apache.*1\.1\b", "Apache-1.1"),
    (r"apache|\basl\b|\basf\b", "Apache-2.0"),
    (r"\b0bsd\b|zero-clause bsd", "0BSD"),
    (r"bsd.*\b2\b|bsd-2|2-clause|simplified bsd|freebsd", "BSD-2-Clause"),
    (r"bsd.*\b3\b|bsd-3|3-clause|new bsd|revised bsd|modified bsd|\bgo license", "BSD-3-Clause"),
    (r"\bbsd\b", "BSD"),
    (r"mit-0\b", "MIT-0"),
    (r"mit-cmu|\bhpnd\b", "HPND"),
    (r"\bmit\b|expat|\bx11\b|bouncy castle", "MIT"),
    (r"mozilla public.*1\.1|\bmpl[- ]?1\.1", "MPL-1.1"),
    (r"mozilla public|\bmpl\b|\bmpl[- ]?2", "MPL-2.0"),
    (r"\bisc\b", "ISC"),
    (r"unicode", "Unicode"),
    (r"\bcnri", "CNRI-Python"),
    (r"\bpsf|python software foundation|python-2\.0|python license", "PSF-2.0"),
    (r"public[- ]domain", "Public-Domain"),
    (r"\bcc0|creative commons zero", "CC0-1.0"),
    (r"unlicense", "Unlicense"),
    (r"\bzlib|libpng", "Zlib"),
    (r"boost|\bbsl-1\.0", "BSL-1.0"),
    (r"artistic", "Artistic"),
    (r"postgresql", "PostgreSQL"),
    (r"universal permissive|\bupl\b", "UPL-1.0"),
    (r"blue ?oak", "BlueOak-1.0.0"),
    (r"\bw3c\b", "W3C"),
    (r"common public license|\bcpl\b", "CPL-1.0"),
)

_REFUSED = [(re.compile(p), name) for p, name in REFUSED]
_ACCEPTED = [(re.compile(p), name) for p, name in ACCEPTED]

#: Maven groups refused whatever licence their POM names (decision 0014): the vendors' servers
REFUSED_GROUPS: tuple[str, ...] = ("io.camunda", "org.elasticsearch", "co.elastic")

_OR = re.compile(r"\s+or\s+|\s*\|\s*|\s+\+\s+|\s*;\s*", re.IGNORECASE)
_SLASH = re.compile(r"\s*/\s*")
#: SPDX's operator binds every name; a lower-case "and" may be inside one (CDDL's)
_AND_SPDX = re.compile(r"\s+AND\s+")
_AND = re.compile(r"\s+and\s+|\s*&\s*", re.IGNORECASE)


def canonical(term: str) -> tuple[Status, str]:
    """One licence name (no OR/AND in it) -> its canonical name and whether we take it."""
    text = " ".join(term.lower().replace("_", " ").split()).strip("()[]\"' ,.")
    if not text:
        return Status.UNKNOWN, "?"
    for pattern, name in _REFUSED:
        if pattern.search(text):
            return Status.REFUSED, name
    for pattern, name in _ACCEPTED:
        if pattern.search(text):
            return Status.ACCEPTED, name
    return Status.UNKNOWN, f"?{term.strip()}"


def judge(licence: str) -> Verdict:
    """A licence expression as found -> accepted, refused or unknown, with its canonical form."""
    status, text = _evaluate(licence.strip())
    reason = ""
    if status is Status.REFUSED:
        reason = f"refused licence: {text}"
    elif status is Status.UNKNOWN:
        reason = f"unknown licence: {licence.strip() or '(none found)'}"
    return Verdict(status, text, reason)


def refused_coordinate(group: str) -> str | None:
    """Why a Maven group is refused outright, or None."""
    for refused in REFUSED_GROUPS:
        if group == refused or group.startswith(refused + "."):
            return f"group {group} is refused (the vendor's own terms; decision 0014)"
    return None


def combine_any(results: list[tuple[Status, str]]) -> tuple[Status, str]:
    """Alternatives: accepted if any is, else unknown if any is, else refused."""
    text = " OR ".join(dict.fromkeys(t for _, t in results))
    statuses = {s for s, _ in results}
    for status in (Status.ACCEPTED, Status.UNKNOWN, Status.REFUSED):
        if status in statuses:
            return status, text
    return Status.UNKNOWN, text


def combine_all(results: list[tuple[Status, str]]) -> tuple[Status, str]:
    """Conjunctions: refused if any is, else unknown if any is, else accepted."""
    text = " AND ".join(dict.fromkeys(f"({t})" if " OR " in t else t for _, t in results))
    statuses = {s for s, _ in results}
    for status in (Status.REFUSED, Status.UNKNOWN, Status.ACCEPTED):
        if status in statuses:
            return status, text
    return Status.UNKNOWN, text


def _evaluate(expr: str) -> tuple[Status, str]:
    expr = _strip_parens(re.sub(r"\bw/\s*", "with ", expr))
    if not expr:
        return Status.UNKNOWN, "?"
    # Options first, so "MIT OR AGPL" offers MIT; a slash splits only outside a URL.
    alternatives = _split_top(expr, _OR)
    if len(alternatives) == 1 and "://" not in expr and "www." not in expr:
        alternatives = _split_top(expr, _SLASH)
    if len(alternatives) > 1:
        results = [_evaluate(a) for a in alternatives]
        taken = [r for r in results if r[0] is Status.ACCEPTED]
        # "License :: ... Library or Lesser General Public License (LGPL)": show what was read.
        return combine_any(taken or results)
    parts = _split_top(expr, _AND_SPDX)
    if len(parts) > 1 and all(_spdx_operand(p) for p in parts):
        return combine_all([_evaluate(p) for p in parts])
    whole = canonical(expr)
    if whole[0] is not Status.UNKNOWN:
        # "Common Development and Distribution License" is one name, not two.
        return whole
    parts = _split_top(expr, _AND)
    if len(parts) > 1:
        return combine_all([_evaluate(p) for p in parts])
    return whole


def _spdx_operand(part: str) -> bool:
    """An SPDX expression's operand is one identifier (perhaps WITH an exception) or a group:
    so "Apache-2.0 AND MIT" is two licences, "COMMON DEVELOPMENT AND DISTRIBUTION ..." one."""
    part = re.sub(r"\s+WITH\s+", "-with-", part.strip())
    return part.startswith("(") or not any(c.isspace() for c in part)


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")") and _closes_at_end(expr):
        expr = expr[1:-1].strip()
    return expr


def _closes_at_end(expr: str) -> bool:
    """Whether the opening parenthesis at 0 is closed by the last character."""
    depth = 0
    for index, char in enumerate(expr):
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return index == len(expr) - 1
    return False


def _split_top(expr: str, separator: re.Pattern[str]) -> list[str]:
    """Split at `separator` outside parentheses; empty pieces dropped."""
    pieces: list[str] = []
    depth = 0
    start = 0
    index = 0
    while index < len(expr):
        char = expr[index]
        if char in "()":
            depth += 1 if char == "(" else -1
            index += 1
            continue
        match = separator.match(expr, index) if depth == 0 else None
        if match and match.end() > index:
            pieces.append(expr[start:index])
            start = index = match.end()
            continue
        index += 1
    pieces.append(expr[start:])
    return [p.strip() for p in pieces if p.strip()]
