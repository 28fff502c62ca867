"""The ``jobsheet`` command line."""

from jobsheet.cli.app import app, main

__all__ = ["app", "main"]
