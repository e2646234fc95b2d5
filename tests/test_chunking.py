"""The automatic chunk sizer batches tiny tasks, leaves slow ones alone and balances the end."""

from __future__ import annotations

from anyexec._chunking import Chunker


def _drive(chunker: Chunker, per_item: float, total: int) -> list[int]:
    """Sizes chosen for a whole map whose calls each take ``per_item`` seconds."""
    sizes, pulled = [], 0
    while pulled < total:
        size = min(chunker.next_size(pulled), total - pulled)
        sizes.append(size)
        pulled += size
        chunker.observe(size, size * per_item)
    return sizes


def test_tiny_tasks_grow_into_large_chunks_but_not_past_the_cap() -> None:
    chunker = Chunker(fixed=None, target_seconds=0.02, workers=2, total=None)
    sizes = _drive(chunker, 1e-7, 200_000)
    assert sizes[0] == 1
    assert max(sizes) == 4_096
    # Geometric growth: a handful of small chunks before the cap, not one huge jump.
    assert sizes[1:4] == [8, 64, 512]


def test_input_of_known_length_is_not_held_to_the_cap_for_endless_input() -> None:
    # A finite input: chunks as large as balancing allows, not hundreds of 4,096-item chunks
    # whose per-chunk cost in the caller would compete with the workers for the CPU.
    chunker = Chunker(fixed=None, target_seconds=0.02, workers=2, total=200_000)
    sizes = _drive(chunker, 1e-7, 200_000)
    assert sizes[1:4] == [8, 64, 512]  # the same geometric growth
    assert max(sizes) > 4_096
    assert len(sizes) < 25


def test_costlier_engines_get_a_larger_cap() -> None:
    cheap = Chunker(fixed=None, target_seconds=0.02, workers=2, total=None)
    costly = Chunker(fixed=None, target_seconds=0.5, workers=2, total=None)
    assert max(_drive(costly, 1e-7, 1_000_000)) > max(_drive(cheap, 1e-7, 1_000_000))
    assert max(_drive(costly, 1e-7, 1_000_000)) <= 65_536


def test_slow_tasks_stay_one_per_chunk() -> None:
    chunker = Chunker(fixed=None, target_seconds=0.02, workers=10, total=100)
    assert set(_drive(chunker, 0.05, 100)) == {1}


def test_known_length_chunks_shrink_towards_the_end_so_workers_finish_together() -> None:
    # A costly engine (target 0.5 s) would batch 10 naps of 50 ms; with 10 workers and 100
    # items that would leave most workers idle in the last round.
    chunker = Chunker(fixed=None, target_seconds=0.5, workers=10, total=100)
    sizes = _drive(chunker, 0.05, 100)
    assert max(sizes) <= 5
    assert sizes[-10:] == [1] * 10


def test_a_fixed_chunksize_is_used_as_given() -> None:
    chunker = Chunker(fixed=7, target_seconds=0.02, workers=2, total=100)
    chunker.observe(7, 1e-6)
    assert chunker.next_size(0) == 7


def test_a_change_in_task_duration_is_followed() -> None:
    chunker = Chunker(fixed=None, target_seconds=0.02, workers=2, total=None)
    _drive(chunker, 1e-7, 50_000)
    for _ in range(4):
        chunker.observe(chunker.next_size(0), chunker.next_size(0) * 0.05)
    assert chunker.next_size(0) == 1


def test_tiny_tasks_with_a_known_length_do_not_end_in_a_tail_of_tiny_chunks() -> None:
    # On a costly engine each task costs milliseconds: shrinking trivial chunks to one item
    # at the end would cost more than any imbalance it avoids.
    chunker = Chunker(fixed=None, target_seconds=0.5, workers=2, total=200_000)
    sizes = _drive(chunker, 1e-7, 200_000)
    assert len(sizes) < 40


def test_a_measured_call_duration_skips_the_ramp_from_single_items() -> None:
    # An earlier map of the same function measured 0.1 us per call: start one growth step
    # below what that wants, not from single items.
    chunker = Chunker(fixed=None, target_seconds=0.02, workers=2, total=200_000, per_item=1e-7)
    assert chunker.next_size(0) == 65_536 // 8


def test_a_measured_slow_call_still_starts_one_per_chunk() -> None:
    chunker = Chunker(fixed=None, target_seconds=0.02, workers=2, total=100, per_item=0.01)
    assert chunker.next_size(0) == 1


def test_a_fixed_chunksize_ignores_a_measured_duration() -> None:
    chunker = Chunker(fixed=7, target_seconds=0.02, workers=2, total=100, per_item=1e-7)
    assert chunker.next_size(0) == 7
    assert chunker.per_item is None


def test_an_executor_remembers_the_call_duration_of_the_function_it_last_mapped() -> None:
    import anyexec
    from anyexec._map import _learned
    from anyexec.testing import tasks

    with anyexec.get_executor("threads", max_workers=2) as ex:
        assert _learned(ex, tasks.square) is None
        assert list(ex.map(tasks.square, range(100))) == [x * x for x in range(100)]
        assert _learned(ex, tasks.square) is not None
        assert _learned(ex, tasks.pid) is None
