"""The server's own web pages: Jinja2 templates and static files (uPlot vendored, no CDN)."""

from server.web.pages import STATIC_DIR, TEMPLATES_DIR, mount_web

__all__ = ["STATIC_DIR", "TEMPLATES_DIR", "mount_web"]
