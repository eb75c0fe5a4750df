from __future__ import annotations

from django.urls import path

from health import views

urlpatterns = [
    path("status.json", views.status_json, name="status_json"),
    path("status/", views.status_page, name="status_page"),
]
