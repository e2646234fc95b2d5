"""Options for a backend factory: check names and convert strings to each option's type.

A backend declares its options as keyword parameters of its factory; the factory's signature is
the single source of truth for which options exist and what type each one has. Values that came
from a spec string (``processes?max_workers=8``) arrive as strings and are converted here.
"""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

__all__ = ["OptionSchema", "convert_text", "option_schema"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null"}


class OptionSchema:
    """The options a factory accepts, read from its signature."""

    def __init__(self, params: Mapping[str, inspect.Parameter], hints: Mapping[str, Any],
                 open_ended: bool) -> None:
        self.params = dict(params)
        self.hints = dict(hints)
        #: True when the factory takes ``**kwargs``: any name is passed through unchecked.
        self.open_ended = open_ended

    @property
    def names(self) -> list[str]:
        return sorted(self.params)

    def check_names(self, options: Mapping[str, object], *, backend: str, origin: str) -> None:
        """Raise ``TypeError`` naming the first unknown option and the accepted ones."""
        if self.open_ended:
            return
        for key in options:
            if key not in self.params:
                # Executor-level options (anyexec._worker_setup) are accepted by every backend.
                from anyexec._worker_setup import SETUP_OPTIONS

                names = sorted({*self.names, *SETUP_OPTIONS})
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                accepted = ", ".join(names)
                raise TypeError(
                    f"backend {backend!r} has no option {key!r} (from {origin}){hint} "
                    f"Accepted options: {accepted}."
                )

    def convert(self, key: str, text: str, *, backend: str, origin: str) -> object:
        """Convert the string ``text`` given for option ``key`` to the option's type."""
        param = self.params.get(key)
        target: Any = self.hints.get(key, inspect.Parameter.empty)
        if target is inspect.Parameter.empty and param is not None:
            default = param.default
            # No annotation: fall back on the default's type (stdlib executors are unannotated).
            target = type(default) if default not in (inspect.Parameter.empty, None) else str
        if key == "max_workers" and target in (str, inspect.Parameter.empty):
            target = int | None
        try:
            return convert_text(text, target)
        except ValueError as exc:
            raise ValueError(
                f"option {key}={text!r} for backend {backend!r} (from {origin}) is invalid: {exc}"
            ) from None


def option_schema(factory: Callable[..., object]) -> OptionSchema:
    """Read the keyword options of ``factory`` (a class or a function)."""
    target: Any = typing.cast(Any, factory).__init__ if isinstance(factory, type) else factory
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return OptionSchema({}, {}, open_ended=True)
    try:
        hints = typing.get_type_hints(target)
    except NameError:
        # A backend may import typing's names (Literal, Any) only under TYPE_CHECKING, to keep
        # its own import cheap: look those up in typing, after the module's own names.
        try:
            hints = typing.get_type_hints(target, localns=_with_typing_names(target))
        except Exception:
            hints = {}
    except Exception:
        # Unresolvable annotations (names only importable with the engine) are not fatal:
        # values are then converted by their defaults' types.
        hints = {}
    params = {}
    open_ended = False
    for name, param in sig.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        elif param.kind in (inspect.Parameter.KEYWORD_ONLY,
                            inspect.Parameter.POSITIONAL_OR_KEYWORD):
            params[name] = param
    return OptionSchema(params, hints, open_ended)


def _with_typing_names(target: Any) -> dict[str, Any]:
    names = {name: getattr(typing, name) for name in typing.__all__}
    names.update(getattr(target, "__globals__", {}))
    return names


def convert_text(text: str, target: Any) -> object:
    """Convert ``text`` to ``target`` (a type or a typing construct); raise ``ValueError``."""
    origin = typing.get_origin(target)
    if origin in (Union, types.UnionType):
        args = typing.get_args(target)
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_text(text, arg)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"cannot convert {text!r}")
    if origin is Literal:
        choices = typing.get_args(target)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ValueError(f"expected one of {', '.join(map(repr, choices))}")
    if target is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("expected a boolean: true/false, yes/no, on/off or 1/0")
    if target is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if target is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    if origin in (dict, list, tuple) or target in (dict, list, tuple) or origin is Mapping:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("expected JSON, for example {\"CPU\": 2} or [1, 2]") from None
        return tuple(value) if (origin or target) is tuple else value
    return text
