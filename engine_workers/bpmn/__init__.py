"""The engines' BPMN processes, deployed by the workers at start (`deployment`).

A wait that is one setting for every payment (how long to await PUT /parties, PUT /quotes, the
answer to GET /transfers) is written into the deployed definition, not kept as a variable of
each instance: every process variable costs rows per payment in the engine's runtime and
history tables. The files keep the expressions (`${partyWait}`), so a definition deployed as it
is still reads the waits from its instance's variables. Changing a wait deploys a new version;
instances already running keep the waits they started with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

FILES = ("payer-transfer.bpmn", "payee-party-lookup.bpmn", "payee-quote-transfer.bpmn")
#: the waits a deployment may fix (variable name in the BPMN expressions)
FIXED_WAITS = ("partyWait", "quoteWait", "statusWait")
#: an ISO 8601 duration as Operaton's timers read it (PT30S, P1DT2H, PT0.5S)
ISO_DURATION = re.compile(
    r"^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)


def paths() -> list[Path]:
    """Filesystem paths of every process definition."""
    root = resources.files(__package__)
    return [Path(str(root.joinpath(name))) for name in FILES]


def deployment(waits: Mapping[str, str]) -> dict[str, bytes]:
    """Every definition (file name -> content) with `waits` (name -> ISO 8601 duration, names
    from FIXED_WAITS) written in place of their expressions; ValueError for anything else."""
    for name, value in waits.items():
        if name not in FIXED_WAITS:
            raise ValueError(
                f"{name!r} is not a wait a deployment fixes ({', '.join(FIXED_WAITS)})"
            )
        if not ISO_DURATION.match(value):
            raise ValueError(f"{name}={value!r} is not an ISO 8601 duration such as PT30S")
    files = {}
    for path in paths():
        text = path.read_text(encoding="utf-8")
        for name, value in waits.items():
            text = text.replace("${" + name + "}", value)
        files[path.name] = text.encode("utf-8")
    return files
