"""``anyexec._record.Record``: anyexec's light stand-in for ``typing.NamedTuple``.

Records cross process boundaries (chunk outcomes, pickled callables), so they must pickle by
reference, keep defaults and methods, and reject a field order namedtuple cannot express.
"""

from __future__ import annotations

import pickle

import pytest

from anyexec._record import Record
from anyexec._registry import BackendInfo
from anyexec._wire import ChunkOutcome, Failure


class Point(Record):
    """A point."""

    x: int
    y: int = 0

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


def test_a_record_is_a_tuple_with_named_fields_defaults_and_methods() -> None:
    p = Point(3, -4)
    assert p == (3, -4)
    assert (p.x, p.y) == (3, -4)
    assert Point(5) == (5, 0)
    assert p.norm1() == 7
    assert p._replace(y=1) == (3, 1)
    assert Point._fields == ("x", "y")
    assert Point.__doc__ == "A point."
    assert Point.__qualname__ == "Point"
    assert Point.__module__ == __name__
    assert Point.__annotations__ == {"x": "int", "y": "int"}
    assert repr(p) == "Point(x=3, y=-4)"


def test_records_pickle_by_reference_to_their_module() -> None:
    failure = Failure(1, ValueError("bad"), "Traceback ...", "'item'")
    outcome = ChunkOutcome([1, 2], [failure])
    back = pickle.loads(pickle.dumps(outcome))
    assert type(back) is ChunkOutcome
    assert back.values == [1, 2]
    assert back.elapsed == 0.0
    assert back.failures[0].item_repr == "'item'"
    info = BackendInfo("x", True, None, None, "anyexec")
    assert pickle.loads(pickle.dumps(info)) == info
    assert info.aliases == ()


def test_a_field_without_default_after_one_with_a_default_is_rejected() -> None:
    with pytest.raises(TypeError, match="without a default follows one with a default"):
        class Bad(Record):
            a: int = 0
            b: int
