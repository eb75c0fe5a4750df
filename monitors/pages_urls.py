"""URLs of the team's server list pages (the scanner's own pages are in its urls module)."""

from __future__ import annotations

from django.urls import path

from monitors import pages

urlpatterns = [
    path("servers/", pages.server_list, name="server_list"),
    path("servers/progress/", pages.server_progress, name="server_list_progress"),
    path("servers/add/", pages.server_add, name="server_list_add"),
    path("servers/bulk/", pages.server_bulk_add, name="server_list_bulk"),
    path("servers/<uuid:server_id>/pause/", pages.server_pause_toggle, name="server_list_pause"),
    path("servers/<uuid:server_id>/remove/", pages.server_remove, name="server_list_remove"),
]
