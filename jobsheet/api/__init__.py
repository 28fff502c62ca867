"""The PAR gateway: the HTTP service that turns pre-authenticated requests into storage access."""

from jobsheet.api.app import create_app

__all__ = ["create_app"]
