"""Licence files read by phrase: the licence a LICENSE/COPYING text states near its top."""

from __future__ import annotations

import re

#: full licence texts, by a phrase each one states near its top; the earliest phrase wins
TEXT_MARKERS: tuple[tuple[str, str], ...] = (
    (r"gnu affero general public license", "AGPL-3.0"),
    (r"server side public license", "SSPL-1.0"),
    (r"business source license", "BUSL-1.1"),
    (r"elastic license", "Elastic-2.0"),
    (r"commons clause", "Commons-Clause"),
    (r"zeebe community license", "Zeebe-Community"),
    (r"camunda license", "Camunda-License"),
    (r"gnu (?:lesser|library) general public license", "LGPL"),
    (r"gnu general public license", "GPL"),
    (r"apache license", "Apache-2.0"),
    (r"mozilla public license", "MPL-2.0"),
    (r"eclipse public license\s*-?\s*v(?:ersion|\.)?\s*2", "EPL-2.0"),
    (r"eclipse public license", "EPL-1.0"),
    (r"eclipse distribution license", "EDL-1.0"),
    (r"common development and distribution license", "CDDL"),
    (r"permission is hereby granted, free of charge", "MIT"),
    (r"permission to use, copy, modify, and(?:/or)? distribute this software for any", "ISC"),
    (r"redistribution and use in source and binary forms", "BSD"),
    (r"python software foundation license", "PSF-2.0"),
    (r"free and unencumbered software released into the public domain", "Unlicense"),
    (r"boost software license", "BSL-1.0"),
    (r"universal permissive license", "UPL-1.0"),
    (r"blue oak model license", "BlueOak-1.0.0"),
)
_TEXT = [(re.compile(p), name) for p, name in TEXT_MARKERS]
#: how far into a licence file we look for its name
TEXT_HEAD = 6000


def classify_text(text: str) -> str | None:
    """The licence a LICENSE/COPYING text states first, as a name `judge` reads, or None."""
    head = " ".join(text[:TEXT_HEAD].lower().split())
    found: list[tuple[int, str]] = []
    for pattern, name in _TEXT:
        match = pattern.search(head)
        if match:
            found.append((match.start(), name))
    if not found:
        return None
    name = min(found)[1]
    if name == "BSD":
        three = "neither the name" in head or "endorse or promote" in head
        return "BSD-3-Clause" if three else "BSD-2-Clause"
    if name == "GPL" and "classpath" in head:
        return "GPL-2.0-with-classpath-exception"
    return name
