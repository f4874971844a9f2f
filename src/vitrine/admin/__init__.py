"""The admin web UI at /admin: server-rendered pages (Jinja2 + htmx) over the services."""

from vitrine.admin.app import AdminUI, install_admin

__all__ = ["AdminUI", "install_admin"]
