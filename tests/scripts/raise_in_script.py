"""A task function defined in the script raises: its traceback must show this file's lines.

Usage: raise_in_script.py BACKEND
"""

import sys
import traceback

import anyexec


def parse(record):
    fields = record.split(",")
    return int(fields[1])  # the line the traceback must show


class Parser:
    @classmethod
    def parse(cls, record):
        return int(record)  # the classmethod's line


if __name__ == "__main__":
    with anyexec.get_executor(sys.argv[1], max_workers=2) as ex:
        try:
            list(ex.map(parse, ["a,1", "b,x"]))
        except ValueError:
            traceback.print_exc(file=sys.stdout)
        try:
            ex.submit(Parser.parse, "y").result()
        except ValueError:
            traceback.print_exc(file=sys.stdout)
