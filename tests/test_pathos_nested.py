"""pathos: a task that starts its own pathos process pool is told why it cannot (issue 14 item 4).

Before the fix the pool failed in a slot thread with multiprocess's bare AssertionError
("daemonic processes are not allowed to have children"), which anyexec reported as a
WorkerCrashedError blaming os._exit(), a segfault or the out-of-memory killer.
"""

from __future__ import annotations

import pytest

import anyexec

pytest.importorskip("pathos")


def nested_pathos_sum(x: int) -> int:
    with anyexec.get_executor("pathos", max_workers=2) as inner:
        return sum(inner.map(abs, range(x + 2)))


def test_a_nested_pathos_process_pool_is_refused_with_the_reason() -> None:
    with anyexec.get_executor("pathos", max_workers=2) as ex, \
            pytest.raises(RuntimeError) as caught:
        list(ex.map(nested_pathos_sum, range(2)))
    assert not isinstance(caught.value, anyexec.WorkerCrashedError)
    message = str(caught.value)
    assert "daemonic processes are not allowed to have children" in message
    assert "'serial'" in message
    assert "os._exit" not in message


def test_a_pathos_pool_inside_a_non_daemonic_worker_still_works() -> None:
    with anyexec.get_executor("processes", max_workers=2) as ex:
        assert list(ex.map(nested_pathos_sum, range(3))) == [1, 3, 6]
