"""The package's version, apart from the package root (which re-exports the SDK)."""

__version__ = "0.1.0"
