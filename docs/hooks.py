"""MkDocs hook: show Sphinx roles in docstrings (:func:`x`) as plain code in the API pages.

The docstrings are written for ``help()`` and IDEs, which show the roles as text; mkdocstrings
renders them as Markdown, where ``:func:`` would stay visible before the code span.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|exc|data|obj):(?=<code>)")


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub("", html)
