"""The public rights portal's pages: Jinja2 templates, a little CSS and JS, and the security they are served with.

The routes live in facetrail.api.routes.portal; this package only renders and protects.
"""
