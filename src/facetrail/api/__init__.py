"""The REST API (FastAPI): translates HTTP requests into service calls and errors into responses.

`create_app` is imported from `facetrail.api.app` when it is first asked for, not with this package: `serve`
(api/server.py) starts loading the index before it imports the web application, and importing any module of the
package would otherwise import the whole application first (FastAPI, the routes, the templates: about 0.6 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facetrail.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from facetrail.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
