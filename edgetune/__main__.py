"""`python -m edgetune ...`: the same command line as `edgetune ...`."""

from edgetune.cli import main

main()
