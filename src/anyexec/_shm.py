"""Big function payloads in shared memory: written once by the caller, mapped by each worker.

A function that carries a large object (``partial(f, table)``, a method of an object holding a
model) used to travel inside every task. Above :data:`THRESHOLD` bytes the caller instead
pickles it once with pickle protocol 5, lays the pickle and its out-of-band buffers (NumPy
arrays, ``bytearray``, Arrow/pandas blocks: anything exporting a ``PickleBuffer``) out in one
POSIX shared-memory segment, and the tasks carry only the segment's name. A worker maps the
segment copy-on-write and unpickles with the buffers pointing into the mapping, so an array
arrives without a copy per worker (its pages are the segment's until a worker writes to them);
the worker's function cache then keeps the function for the later tasks.

Lifetime: the segment belongs to a :class:`SharedPayload` object in the caller, which is held
by the executor's payload cache and by every submitted task that carries it; when the last of
them lets go (the function was dropped and its tasks are done, or the executor shut down), it
is unlinked. It is also unlinked at interpreter exit, and Python's resource tracker removes it
if the caller is killed. Workers that still map it keep their mapping; the memory goes when the
last one lets go.

Workers import this module to map a segment: standard library only.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import weakref

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["THRESHOLD", "SharedPayload", "available", "dump_for_store", "dump_to_shared",
           "load_shared"]

#: Payloads at least this large (pickle plus buffers, bytes) go through shared memory.
THRESHOLD = 1 << 20

# Buffers start on 64-byte boundaries: NumPy arrays viewing the segment are then aligned.
_ALIGN = 64


def available() -> bool:
    """Whether this platform has POSIX shared memory (Linux, macOS; not Windows)."""
    if os.name != "posix":
        return False
    try:
        import _posixshmem  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:  # pragma: no cover - a Python built without it
        return False
    return True


class SharedPayload:
    """A segment holding one pickled payload; pickles as its name and layout only.

    In the caller it owns the segment (``_finalizer`` unlinks it when this object goes); the
    copy a worker unpickles owns nothing.
    """

    __slots__ = ("__weakref__", "_finalizer", "name", "spans")

    def __init__(self, name: str, spans: tuple[tuple[int, int], ...]) -> None:
        #: The segment's name, without the leading slash (as ``SharedMemory.name``).
        self.name = name
        #: (offset, length) of the pickle, then of each out-of-band buffer.
        self.spans = spans
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedPayload, (self.name, self.spans))

    @property
    def size(self) -> int:
        return sum(length for _offset, length in self.spans)

    def unlink(self) -> None:
        """Remove the segment now (idempotent); workers' existing mappings stay valid."""
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        return f"<SharedPayload {self.name} {self.size} bytes>"


def _unlink(segment: Any) -> None:
    # Already gone: removed by hand, or by the resource tracker.
    with contextlib.suppress(FileNotFoundError):
        segment.unlink()


def _dump_out_of_band(fn: Any) -> tuple[bytes, list[memoryview], list[pickle.PickleBuffer]]:
    """Pickle ``fn`` with protocol 5; return the stream, the buffers' bytes, the buffers."""
    import cloudpickle

    buffers: list[pickle.PickleBuffer] = []
    data = bytes(cloudpickle.dumps(fn, protocol=5, buffer_callback=buffers.append))
    return data, [buffer.raw() for buffer in buffers], buffers


def dump_for_store(fn: Any) -> bytes | tuple[pickle.PickleBuffer, tuple[pickle.PickleBuffer, ...]]:
    """``fn`` for an engine with an object store (Ray, Dask): plain bytes when small, else the
    pickle and its buffers as ``PickleBuffer`` objects, which the engine's protocol-5
    serializer keeps out of band: stored once, read by each worker without a copy."""
    data, raws, buffers = _dump_out_of_band(fn)
    if len(data) + sum(raw.nbytes for raw in raws) < THRESHOLD:
        if buffers:  # small after all: one self-contained pickle
            import cloudpickle

            return bytes(cloudpickle.dumps(fn, protocol=5))
        return data
    return pickle.PickleBuffer(data), tuple(buffers)


def dump_to_shared(fn: Any) -> bytes | SharedPayload:
    """``fn`` cloudpickled: plain bytes when small, else written once to a new segment."""
    data, raws, buffers = _dump_out_of_band(fn)
    total = len(data) + sum(raw.nbytes for raw in raws)
    if total < THRESHOLD or not available():
        if buffers:  # small after all: one self-contained pickle
            import cloudpickle

            return bytes(cloudpickle.dumps(fn, protocol=5))
        return data
    from multiprocessing import shared_memory

    spans: list[tuple[int, int]] = []
    offset = 0
    for length in (len(data), *(raw.nbytes for raw in raws)):
        spans.append((offset, length))
        offset += -(-length // _ALIGN) * _ALIGN
    # The resource tracker registers the segment here: if the caller is killed, it unlinks it.
    segment = shared_memory.SharedMemory(create=True, size=max(offset, 1))
    try:
        view = segment.buf
        assert view is not None
        for (start, length), source in zip(spans, (memoryview(data), *raws), strict=True):
            view[start:start + length] = source
        del view
        payload = SharedPayload(segment.name, tuple(spans))
        payload._finalizer = weakref.finalize(payload, _unlink, segment)
    except BaseException:
        segment.close()
        segment.unlink()
        raise
    # The caller needs no mapping: the segment keeps the bytes until it is unlinked.
    segment.close()
    return payload


def load_shared(ref: SharedPayload) -> Any:
    """Unpickle a payload from its segment in a worker; the buffers stay in the mapping.

    Mapped with ``shm_open`` directly, not ``SharedMemory``: attaching through that class
    registers the segment with the worker's resource tracker too (before Python 3.13), which
    then unlinks it, or warns about a leak, when the worker exits.
    """
    import _posixshmem

    try:
        fd = _posixshmem.shm_open("/" + ref.name, os.O_RDONLY, mode=0o600)
    except FileNotFoundError:
        from anyexec._errors import SerializationError

        raise SerializationError(
            f"the function's data (shared-memory segment {ref.name!r}, {ref.size} bytes) is "
            "not on this worker's machine: it was removed (the executor was shut down while "
            "the task waited), or the worker runs on another host, where shared memory "
            "cannot reach it"
        ) from None
    try:
        # Copy-on-write: a task that writes to an array it was given changes its own pages,
        # as with a private copy, and never the segment the other workers read.
        mapping = mmap.mmap(fd, os.fstat(fd).st_size, flags=mmap.MAP_PRIVATE,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    view = memoryview(mapping)
    (start, length), *buffer_spans = ref.spans
    import cloudpickle  # noqa: F401  (reducers that cloudpickle output may need)

    # The arrays keep the mapping alive through their buffers; nothing else needs to.
    return pickle.loads(view[start:start + length],
                        buffers=[view[s:s + n] for s, n in buffer_spans])
