"""Options written once, as dataclass fields with help, choices and a test; :func:`check`, :func:`build`."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

__all__ = ["option", "check", "build", "defaults", "signature"]

_TYPES = {"str": str, "bool": bool, "int": int, "float": float, "dict": dict, "tuple": (tuple, list)}


def option(default: Any, help: str, *, choices: tuple = (), must: str = "", test: Callable | None = None) -> Any:
    """A dataclass field with its help, valid ``choices``, and a ``test`` a value must pass (``must``: in words)."""
    metadata = {"help": help, "choices": tuple(choices), "must": must, "test": test}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def kind(spec: dataclasses.Field) -> tuple[Any, bool]:
    """(python type, nullable) of a field annotated ``str``, ``int | None``, ... (as strings)."""
    text = str(spec.type)
    return _TYPES.get(text.split(" |")[0], object), text.endswith("| None")


def _valid(spec: dataclasses.Field, value: Any) -> tuple[bool, Any]:
    target, nullable = kind(spec)
    if value is None:
        return nullable, value
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # an int passes for a float
    wrong_bool = isinstance(value, bool) and target is not bool
    if wrong_bool or not isinstance(value, target) or (target is float and not math.isfinite(value)):
        return False, value
    choices, test = spec.metadata.get("choices", ()), spec.metadata.get("test")
    return (not choices or value in choices) and (test is None or bool(test(value))), value


def check(obj: Any, owner: str = "", skip: tuple[str, ...] = ()) -> Any:
    """``obj`` with each field checked (int -> float where float), else a ValueError naming field, rule and value."""
    where = f"{owner}: " if owner else ""
    for spec in (f for f in dataclasses.fields(obj) if f.name not in skip):
        ok, value = _valid(spec, getattr(obj, spec.name))
        if not ok:
            choices = spec.metadata.get("choices", ())
            if choices and isinstance(value, (str, type(None))):
                valid = ", ".join(str(c) for c in choices)
                raise ValueError(f"{where}unknown {spec.name} {value!r}; valid: {valid}")
            must = spec.metadata.get("must") or kind(spec)[0].__name__ + (" or None" if kind(spec)[1] else "")
            raise ValueError(f"{where}{spec.name} must be {must}, got {value!r}")
        object.__setattr__(obj, spec.name, value)
    return obj


def defaults(cls: type) -> dict[str, Any]:
    """Every field's default, by name."""
    return {f.name: f.default_factory() if callable(f.default_factory) else f.default for f in dataclasses.fields(cls)}


def build(cls: type, values: dict[str, Any], owner: str) -> Any:
    """``cls(**values)``, checked; unknown names raise a ValueError listing the valid ones with defaults."""
    unknown = sorted(set(values) - set(defaults(cls)))
    if unknown:
        names, valid = ", ".join(map(repr, unknown)), ", ".join(f"{k}={v!r}" for k, v in defaults(cls).items())
        raise ValueError(f"unknown option(s) {names} for {owner}; valid, with defaults: {valid or '(none)'}")
    return check(cls(**values), owner)


def signature(cls: type, *leading: str) -> inspect.Signature:
    """``leading`` positional parameters, then the fields of ``cls`` keyword-only with defaults (for ``help()``)."""
    kinds = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    first = [inspect.Parameter(name, kinds[0]) for name in leading]
    rest = [inspect.Parameter(k, kinds[1], default=v) for k, v in defaults(cls).items()]
    return inspect.Signature(first + rest)
