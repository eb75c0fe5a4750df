from __future__ import annotations

from django.urls import path

from monitors import views

urlpatterns = [
    path("spotcheck/", views.spotcheck_form, name="spotcheck"),
    path("spotcheck/<uuid:check_id>/", views.spotcheck_result, name="spotcheck_result"),
    path("servers/<uuid:server_id>/", views.server_detail, name="server_detail"),
    path("servers/<uuid:server_id>/scan/", views.server_scan, name="server_scan"),
]
