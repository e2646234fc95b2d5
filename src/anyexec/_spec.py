"""Parsing of backend spec strings: ``NAME[://ADDRESS][?option=value&...]``.

One string can then carry a backend and its options through an environment variable, for
example ``processes?max_workers=8`` or ``dask://10.0.0.5:8786?retries=2``.
"""

from __future__ import annotations

from anyexec._record import Record

__all__ = ["ParsedSpec", "parse_spec"]

# A name is a letter or "_", then letters, digits, "_", "." or "-" (checked without a regex:
# compiling one costs more at start-up than the check ever does).
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FIRST = frozenset(_LETTERS + "_")
_REST = frozenset(_LETTERS + "0123456789_.-")


class ParsedSpec(Record):
    """A spec string split into its parts; option values are still strings."""

    name: str
    address: str | None
    options: dict[str, str]


def parse_spec(spec: str, *, origin: str = "spec") -> ParsedSpec:
    """Split ``spec`` into name, address and string options.

    ``origin`` names where the string came from (for example the environment variable) so that
    the error message points the user at the right place.
    """
    if not isinstance(spec, str):
        raise TypeError(f"{origin} must be a backend name string, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise ValueError(f"{origin} is empty; give a backend name such as 'processes'")
    query = ""
    if "?" in text:
        text, query = text.split("?", 1)
    address: str | None = None
    if "://" in text:
        from urllib.parse import unquote  # here: most specs are a bare name

        text, address = text.split("://", 1)
        address = unquote(address) or None
    name = text.strip().lower()
    if not name or name[0] not in _FIRST or not _REST.issuperset(name):
        raise ValueError(
            f"malformed backend spec {spec!r} in {origin}: expected "
            "NAME[://ADDRESS][?option=value&...], for example 'processes?max_workers=8' "
            "or 'dask://127.0.0.1:8786'"
        )
    options: dict[str, str] = {}
    if query:
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueError(
                f"malformed options {query!r} in {origin} {spec!r}: expected "
                "option=value pairs joined by '&', for example '?max_workers=8&chunksize=10'"
            ) from None
        for key, value in pairs:
            if key in options:
                raise ValueError(f"option {key!r} is given twice in {origin} {spec!r}")
            options[key] = value
    return ParsedSpec(name=name, address=address, options=options)
