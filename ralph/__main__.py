"""`python -m ralph` is the `ralph` command group."""

from .cli import main

main()
