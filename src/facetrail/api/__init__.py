"""The REST API (FastAPI): translates HTTP requests into service calls and errors into responses."""

from facetrail.api.app import create_app

__all__ = ["create_app"]
