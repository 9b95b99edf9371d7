"""Strict reading of JSON payload fields: each accessor checks the type and range and names the field on error.

A field given as ``null`` counts as absent (its default applies). Fields nobody asked for are rejected by
:meth:`Fields.finish`, so a misspelt option (``maxNewTokens`` for ``max_new_tokens``) fails loudly.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import PayloadError

REQUIRED: Any = object()


def _kind(value: Any) -> str:  # noqa: PLR0911 — one return per JSON type
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _finite(value: int | float) -> bool:
    """A finite float, or an int a float can hold (JSON's integers have no size limit)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


class Fields:
    """Typed view of one JSON object; ``where`` is its path, used in error messages (``train.samples[2]``)."""

    def __init__(self, data: Any, where: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PayloadError(where, f"expected an object, got {_kind(data)}")
        self._data: dict[str, Any] = data
        self._where = where
        self._seen: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self._where}.{name}"

    def _get(self, name: str, default: Any) -> tuple[Any, bool]:
        self._seen.add(name)
        value = self._data.get(name)
        if value is not None:
            return value, True
        if default is REQUIRED:
            squash = name.replace("_", "").lower()
            near = [k for k in self._data if k != name and k.replace("_", "").lower() == squash]
            hint = f" (got {near[0]!r}: payload fields are snake_case)" if near else ""
            raise PayloadError(self.path(name), f"is required{hint}")
        return default, False

    def int(self, name: str, default: Any = REQUIRED, *, min: int | None = None, max: int | None = None) -> Any:
        value, given = self._get(name, default)
        if not given:
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PayloadError(self.path(name), f"expected an integer, got {_kind(value)} {value!r}")
        if min is not None and value < min:
            raise PayloadError(self.path(name), f"must be >= {min}, got {value}")
        if max is not None and value > max:
            raise PayloadError(self.path(name), f"must be <= {max}, got {value}")
        return value

    def seed(self, name: str, default: Any = REQUIRED) -> Any:
        """An integer seed, within what torch and NumPy's generators take (a signed 64-bit integer)."""
        return self.int(name, default, min=-(2**63), max=2**63 - 1)

    def float(self, name: str, default: Any = REQUIRED, *, min: float | None = None, max: float | None = None) -> Any:
        value, given = self._get(name, default)
        if not given:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise PayloadError(self.path(name), f"expected a finite number, got {_kind(value)} {str(value)[:40]}")
        if min is not None and value < min:
            raise PayloadError(self.path(name), f"must be >= {min}, got {value}")
        if max is not None and value > max:
            raise PayloadError(self.path(name), f"must be <= {max}, got {value}")
        return float(value)

    def bool(self, name: str, default: Any = REQUIRED) -> Any:
        value, given = self._get(name, default)
        if given and not isinstance(value, bool):
            raise PayloadError(self.path(name), f"expected a boolean, got {_kind(value)} {value!r}")
        return value

    def str(self, name: str, default: Any = REQUIRED, *, choices: tuple[str, ...] | None = None) -> Any:
        value, given = self._get(name, default)
        if not given:
            return value
        if not isinstance(value, str):
            raise PayloadError(self.path(name), f"expected a string, got {_kind(value)}")
        if choices is not None and value not in choices:
            raise PayloadError(self.path(name), f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    def str_list(self, name: str, default: Any = REQUIRED, *, non_empty: bool = False) -> Any:
        value, given = self._get(name, default)
        if not given:
            return value
        if not isinstance(value, list):
            raise PayloadError(self.path(name), f"expected an array of strings, got {_kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise PayloadError(f"{self.path(name)}[{i}]", f"expected a string, got {_kind(item)}")
        if non_empty and not value:
            raise PayloadError(self.path(name), "must not be empty")
        return list(value)

    def int_each(
        self, name: str, count: int, *, min: int | None = None, max: int | None = None, nullable: bool = False
    ) -> Any:
        """An array of ``count`` integers, one per item of another array (``null`` items too with ``nullable``);
        ``None`` when the field is absent or null."""
        value, given = self._get(name, None)
        if not given:
            return None
        if not isinstance(value, list) or len(value) != count:
            raise PayloadError(self.path(name), f"expected an array of {count} entries (one per prompt)")
        bounds = ""
        if min is not None:
            bounds = f" from {min} to {max}" if max is not None else f" ≥ {min}"
        out = []
        for i, item in enumerate(value):
            if item is None and nullable:
                out.append(None)
                continue
            # As in `int`: a whole float (1.0) is that integer.
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            bad = isinstance(item, bool) or not isinstance(item, int)
            if bad or (min is not None and item < min) or (max is not None and item > max):
                what = f"{'null or ' if nullable else ''}an integer{bounds}"
                raise PayloadError(f"{self.path(name)}[{i}]", f"expected {what}, got {item!r}")
            out.append(item)
        return out

    def list(self, name: str, default: Any = REQUIRED) -> Any:
        value, given = self._get(name, default)
        if given and not isinstance(value, list):
            raise PayloadError(self.path(name), f"expected an array, got {_kind(value)}")
        return value

    def obj(self, name: str) -> Fields:
        """Nested object (absent or ``null`` reads as ``{}``)."""
        value, _ = self._get(name, None)
        return Fields(value, self.path(name))

    def raw(self, name: str, default: Any = REQUIRED) -> Any:
        value, _ = self._get(name, default)
        return value

    def finish(self) -> None:
        """Reject fields that no accessor read."""
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            known = ", ".join(sorted(self._seen)) or "none"
            raise PayloadError(self.path(unknown[0]), f"unknown field (known fields: {known})")
