"""``python -m jobsheet.cli``: the same as the ``jobsheet`` console script."""

from jobsheet.cli.app import main

main()
