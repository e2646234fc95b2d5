"""Every argument of get_executor and map, given a wrong type or value, gets a named error.

Hypothesis drives spec strings and option values: whatever the input, the outcome is either a
working executor or one of the documented errors, never a crash from deep inside.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyexec
from anyexec._options import convert_text
from anyexec._spec import parse_spec
from anyexec.testing import tasks

DOCUMENTED = (anyexec.UnknownBackendError, anyexec.BackendUnavailableError, ValueError,
              TypeError)

spec_text = st.text(alphabet=string.printable, max_size=40)
names = st.sampled_from(["serial", "threads", "thread", "sequential", "nope", "", "SERIAL"])
option_names = st.sampled_from(["max_workers", "thread_name_prefix", "max_worker", "x"])
option_values = st.one_of(st.text(max_size=8), st.integers(-3, 50).map(str),
                          st.sampled_from(["none", "true", "1.5", "%20", "&", "="]))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(spec_text)
def test_any_spec_string_gives_an_executor_or_a_documented_error(text: str) -> None:
    try:
        ex = anyexec.get_executor(text)
    except DOCUMENTED as exc:
        assert str(exc), "errors must say what was wrong"  # noqa: PT017 - either outcome is valid
        return
    ex.shutdown()


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(names, st.dictionaries(option_names, option_values, max_size=3))
def test_any_options_in_a_spec_give_an_executor_or_a_named_error(
    name: str, options: dict[str, str]
) -> None:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    spec = f"{name}?{query}" if query else name
    try:
        ex = anyexec.get_executor(spec)
    except DOCUMENTED as exc:
        message = str(exc)
        bad_names = [k for k in options if k not in ("max_workers", "thread_name_prefix")]
        if isinstance(exc, TypeError) and bad_names:
            assert any(k in message for k in bad_names), message
        return
    with ex:
        assert ex.submit(tasks.square, 3).result(timeout=30) == 9


@given(st.text(max_size=20))
def test_spec_parsing_never_fails_with_an_undocumented_error(text: str) -> None:
    try:
        parsed = parse_spec(text)
    except ValueError:
        return
    assert parsed.name == parsed.name.lower()


@given(st.integers())
def test_int_options_round_trip_through_text(value: int) -> None:
    assert convert_text(str(value), int) == value


@given(st.text(max_size=10).filter(lambda t: t.strip().lower() not in {
    "1", "true", "yes", "on", "0", "false", "no", "off"}))
def test_bool_options_reject_anything_but_a_boolean_word(text: str) -> None:
    with pytest.raises(ValueError, match="expected a boolean"):
        convert_text(text, bool)


MAP_CASES = [
    (dict(fn=None), TypeError, "fn must be callable"),
    (dict(iterables=()), TypeError, "at least one iterable"),
    (dict(iterables=(5,)), TypeError, "argument 2 must be iterable"),
    (dict(timeout="1"), TypeError, "timeout must be a number"),
    (dict(timeout=-1), ValueError, "timeout must be >= 0"),
    (dict(chunksize=0), ValueError, "chunksize must be >= 1"),
    (dict(chunksize=2.5), TypeError, "chunksize must be a positive int"),
    (dict(buffersize=0), ValueError, "buffersize must be >= 1"),
    (dict(buffersize=True), TypeError, "buffersize must be a positive int"),
    (dict(ordered="yes"), TypeError, "ordered must be True or False"),
    (dict(progress=1), TypeError, "progress must be True or False"),
    (dict(retries=-1), ValueError, "retries must be >= 0"),
    (dict(retries=1.0), TypeError, "retries must be an int"),
    (dict(retry_on=ValueError("x")), TypeError, "retry_on must be an exception class"),
    (dict(retry_on=(ValueError, int)), TypeError, "retry_on must be an exception class"),
    (dict(on_error="ignore"), ValueError, "on_error must be 'raise' or 'return'"),
    (dict(task_timeout=0), ValueError, "task_timeout must be > 0"),
    (dict(task_timeout="5"), TypeError, "task_timeout must be a number"),
]


@pytest.mark.parametrize(("change", "error", "pattern"), MAP_CASES,
                         ids=[next(iter(c[0])) + "-" + c[2].split()[-1] for c in MAP_CASES])
def test_bad_map_arguments_are_named_at_the_call(change: dict[str, object],
                                                 error: type[Exception], pattern: str) -> None:
    args: dict[str, object] = dict(fn=tasks.square, iterables=([1, 2],))
    args.update(change)
    fn = args.pop("fn")
    iterables = args.pop("iterables")
    with anyexec.get_executor("serial") as ex, pytest.raises(error, match=pattern):
        ex.map(fn, *iterables, **args)  # type: ignore[arg-type]


def test_submit_with_a_non_callable_is_named() -> None:
    with anyexec.get_executor("threads") as ex, pytest.raises(TypeError, match="callable"):
        ex.submit(42)  # type: ignore[arg-type]
