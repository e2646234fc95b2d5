"""``Record``: ``typing.NamedTuple`` for type checkers, a plain ``collections.namedtuple`` at run
time.

Why not ``typing.NamedTuple`` itself: with ``from __future__ import annotations`` it compiles
every field's annotation string into a ``ForwardRef`` when the class is created, about a quarter
of a millisecond per field, and importing ``typing`` costs a few more. anyexec's records have
some forty fields on the path from ``import anyexec`` to the first result, which made that path
measurably slower than a bare process pool. The classes behave the same: tuples with named
fields, defaults, methods, docstrings, and pickling by reference to their module.
"""

from __future__ import annotations

import collections

__all__ = ["TYPE_CHECKING", "Record"]

# A local constant rather than typing.TYPE_CHECKING, so that modules can guard type-only
# imports without importing typing; type checkers treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    # Keys of a class body that describe the class itself rather than being its members.
    _CLASS_KEYS = frozenset({"__module__", "__qualname__", "__annotations__", "__doc__",
                             "__dict__", "__weakref__"})

    class _RecordMeta(type):
        def __new__(mcs, name, bases, namespace):
            if namespace.get("_is_record_base"):
                return super().__new__(mcs, name, bases, namespace)
            # Annotations stay strings: their names and order are all a namedtuple needs.
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[f] for f in fields if f in namespace]
            if defaults and any(f not in namespace for f in fields[len(fields) - len(defaults):]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            cls = collections.namedtuple(name, fields, defaults=defaults or None,
                                         module=namespace["__module__"])
            cls.__qualname__ = namespace["__qualname__"]
            cls.__annotations__ = dict(namespace.get("__annotations__", {}))
            if namespace.get("__doc__"):
                cls.__doc__ = namespace["__doc__"]
            for key, value in namespace.items():
                if key not in _CLASS_KEYS and key not in fields:
                    setattr(cls, key, value)
            return cls

    class Record(metaclass=_RecordMeta):
        """Base of anyexec's records; subclasses become namedtuple classes."""

        _is_record_base = True
