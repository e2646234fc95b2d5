"""Glue between anyexec and other libraries; each module is imported only on request."""
