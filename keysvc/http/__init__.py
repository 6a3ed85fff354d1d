"""keysvc's HTTP service: :func:`create_app` builds the FastAPI application."""

from keysvc.http.app import create_app

__all__ = ["create_app"]
