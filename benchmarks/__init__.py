"""anyexec's benchmark harness: every workload on every installed backend, A/B against the
engine used directly, in the same run.

Run it with ``python -m benchmarks`` (``--quick`` for a run under five minutes); see
``docs/benchmarks.md``.
"""
