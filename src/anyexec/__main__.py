"""``python -m anyexec``: the same as the ``anyexec`` command."""

import sys

from anyexec._cli import main

sys.exit(main())
