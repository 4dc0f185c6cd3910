"""Python values <-> Operaton typed variables (`{"value": ..., "type": ...}`).

Encoding: `str` -> String, `bool` -> Boolean, `int` -> Long, `float` -> Double, `None` -> Null,
`dict`/`list` -> a String holding canonical compact JSON (sorted keys, no spaces), so that
every reader (workers in any language, the history tables, change data capture) sees plain
text and equal values encode equally. Decoding gives the plain value back; JSON stays a string
(`ExternalTask.json` parses it where a caller wants the structure).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys (the one text of a given structure)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode(value: Any) -> dict[str, Any]:
    """One Python value as an Operaton typed value."""
    if value is None:
        return {"value": None, "type": "Null"}
    if isinstance(value, bool):  # before int: bool is an int
        return {"value": value, "type": "Boolean"}
    if isinstance(value, int):
        if not LONG_MIN <= value <= LONG_MAX:
            raise ValueError(f"{value} does not fit a Long variable")
        return {"value": value, "type": "Long"}
    if isinstance(value, float):
        return {"value": value, "type": "Double"}
    if isinstance(value, str):
        return {"value": value, "type": "String"}
    if isinstance(value, dict | list):
        return {"value": canonical_json(value), "type": "String"}
    raise TypeError(f"no engine variable type for {type(value).__name__}")


def encode_all(
    variables: Mapping[str, Any] | None, transient: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """A mapping of names to Python values as Operaton's variables object.

    Names in `transient` are transient variables: the engine reads them in the transaction that
    sets them and stores them nowhere (no runtime or history row)."""
    encoded = {name: encode(value) for name, value in (variables or {}).items()}
    for name in transient:
        if name in encoded:
            encoded[name]["valueInfo"] = {"transient": True}
    return encoded


def decode(typed: Mapping[str, Any]) -> Any:
    """One Operaton typed value as a plain Python value (numbers, text, booleans, None)."""
    value = typed.get("value")
    kind = str(typed.get("type") or "")
    if value is None or kind == "Null":
        return None
    if kind in ("Long", "Integer", "Short"):
        return int(value)
    if kind == "Double":
        return float(value)
    if kind == "Boolean":
        return bool(value)
    return value


def decode_all(variables: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Operaton's variables object as a mapping of names to plain values."""
    return {name: decode(typed) for name, typed in (variables or {}).items()}
