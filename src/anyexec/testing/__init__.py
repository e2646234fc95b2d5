"""The anyexec conformance kit: the suite every backend, built-in or plugin, must pass.

A plugin author writes one test file::

    from anyexec.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mybackend"            # the entry-point name
        options = {"max_workers": 2}     # optional

and runs ``pytest``. The kit needs only pytest. Behaviours a backend may lack are declared by
the backend's ``capabilities`` (see ``anyexec.CAPABILITIES``); the kit checks each declared
capability and skips, with the reason, the checks of capabilities not declared.
"""

from anyexec.testing._conformance import BackendConformance

__all__ = ["BackendConformance"]
