"""The public API: one stateless HTTP service for users (signed ``/v1`` routes) and PAR holders."""

from jobsheet.api.app import create_app

__all__ = ["create_app"]
