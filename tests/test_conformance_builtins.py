"""The conformance kit over the built-in backends that need no engine."""

from anyexec.testing import BackendConformance


class TestSerial(BackendConformance):
    backend = "serial"


class TestThreads(BackendConformance):
    backend = "threads"
    options = {"max_workers": 4}


class TestProcesses(BackendConformance):
    backend = "processes"
    options = {"max_workers": 2}
