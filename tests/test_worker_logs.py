"""``forward_logs=True`` (issue 15 item 2): worker log records reach the caller's handlers.

The behaviour on every backend is in the kit (``WorkerSetupConformance``); these are the
option's edges.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import anyexec
from anyexec.testing import _setup_tasks as setup_tasks


@pytest.fixture
def captured() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("anyexec.kit.forwarded")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


@pytest.mark.parametrize("backend", ["processes", "threads", "serial"])
def test_each_record_arrives_once(backend: str, captured: list[logging.LogRecord]) -> None:
    with anyexec.get_executor(backend, max_workers=2, forward_logs=True) as ex:
        list(ex.map(setup_tasks.log_and_return, range(4), chunksize=1))
    messages = sorted(r.getMessage().split(" on ")[0] for r in captured
                      if r.levelno == logging.INFO)
    assert messages == [f"item {x}" for x in range(4)]


def test_without_the_option_worker_records_stay_in_the_worker(
    captured: list[logging.LogRecord]
) -> None:
    with anyexec.get_executor("processes", max_workers=2) as ex:
        list(ex.map(setup_tasks.log_and_return, range(4), chunksize=1))
    assert captured == []


def test_the_callers_levels_decide(captured: list[logging.LogRecord]) -> None:
    logging.getLogger("anyexec.kit.forwarded").setLevel(logging.WARNING)
    with anyexec.get_executor("processes", max_workers=2, forward_logs=True) as ex:
        list(ex.map(setup_tasks.log_and_return, range(4), chunksize=1))
    assert [r.getMessage() for r in captured] == ["item 2 had a problem"]


def test_forward_logs_in_a_spec_string(captured: list[logging.LogRecord]) -> None:
    with anyexec.get_executor("processes?max_workers=2&forward_logs=true") as ex:
        assert ex.submit(setup_tasks.log_and_return, 7).result() == 7
    assert [r.getMessage().split(" on ")[0] for r in captured] == ["item 7"]


def test_bad_forward_logs_values_are_refused() -> None:
    with pytest.raises(TypeError, match="forward_logs must be True or False"):
        anyexec.get_executor("processes", forward_logs="yes")
    with pytest.raises(ValueError, match=r"forward_logs='maybe'.*give true or false"):
        anyexec.get_executor("processes?forward_logs=maybe")
