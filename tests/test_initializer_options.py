"""How the executor options reach the executor: keywords, use() blocks, spec strings."""

from __future__ import annotations

import threading
import uuid

import pytest

import anyexec
from anyexec.testing import _setup_tasks as setup_tasks


def test_a_use_block_carries_the_initializer() -> None:
    key = uuid.uuid4().hex
    with anyexec.use("processes", max_workers=2, initializer=setup_tasks.remember,
                     initargs=(key,)), anyexec.get_executor() as ex:
        assert {runs for _pid, runs in ex.map(setup_tasks.runs_seen, [key] * 6)} == {1}


def test_an_unpicklable_initializer_is_refused_at_creation() -> None:
    lock = threading.Lock()
    with pytest.raises(anyexec.SerializationError,
                       match=r"initializer .*remember or its initargs cannot be pickled"):
        anyexec.get_executor("processes", initializer=setup_tasks.remember, initargs=(lock,))


def test_threads_need_no_pickling_of_the_initializer() -> None:
    lock = threading.Lock()
    seen: list[object] = []
    with anyexec.get_executor("threads", max_workers=2, initializer=seen.append,
                              initargs=(lock,)) as ex:
        assert list(ex.map(abs, [-1, -2])) == [1, 2]
    assert seen
    assert all(item is lock for item in seen)


def test_an_initializer_cannot_be_written_in_a_spec_string() -> None:
    with pytest.raises(ValueError, match=r"'initializer' .* cannot be given in a spec string"):
        anyexec.get_executor("processes?initializer=load")


def test_keyword_options_override_the_spec_strings() -> None:
    with anyexec.get_executor("processes?max_workers=2&inner_threads=5", inner_threads=3) as ex:
        seen = list(ex.map(setup_tasks.thread_variables, range(2)))
    assert {v["OMP_NUM_THREADS"] for v in seen} == {"3"}
