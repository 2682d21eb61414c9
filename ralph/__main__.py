"""`python -m ralph` is the `ralph` command group."""

import sys

from .cli import main

sys.argv[0] = "ralph"  # messages say `ralph: error: ...`, not `__main__.py: error: ...`
main()
