"""The HTTP API service (FastAPI): ``create_app(book, settings)``; run by ``creditbook serve``."""

from creditbook.entrypoints.api.app import create_app

__all__ = ["create_app"]
