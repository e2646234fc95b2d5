"""A script that forgot `if __name__ == "__main__":` (the README's first example has none).

Usage: no_main_guard.py BACKEND OPTIONS_JSON
"""

import json
import sys

import anyexec

with anyexec.get_executor(sys.argv[1], **json.loads(sys.argv[2])) as ex:
    print(list(ex.map(abs, range(-3, 3))))
