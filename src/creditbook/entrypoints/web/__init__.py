"""The web dashboard: ``create_dashboard(book, access, settings)`` (mounted at /dashboard)."""

from creditbook.entrypoints.web.app import create_dashboard

__all__ = ["create_dashboard"]
