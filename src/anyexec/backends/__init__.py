"""The built-in backends, each registered through the ``anyexec.backends`` entry-point group.

Each module imports its engine only when its backend is created, so that listing backends or
importing anyexec never imports Ray, Dask or joblib.
"""
