from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from keychest import views
from keychest.accounts.confirm import confirm_email

# The composition root: apps are named by string (as in INSTALLED_APPS), so the platform package
# imports none of the apps above it (docs/architecture.md).
urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("", include("health.urls")),
    # First among the includes: scripts call the API far more often than people load pages, and
    # Django tries patterns in order (no other app has a pattern under api/ or settings/api-keys/).
    path("", include("api.urls")),
    # Before allauth's own route of the same name: the confirming browser is signed in too.
    path("accounts/confirm-email/<str:key>/", confirm_email, name="account_confirm_email"),
    path("accounts/", include("allauth.urls")),
    path("", include("keychest.accounts.urls")),
    path("", include("monitors.pages_urls")),
    path("", include("dashboard.urls")),
    path("", include("notifications.urls")),
    path("", include("monitors.urls")),
    path("admin/", admin.site.urls),
]
# Under /api/, a path that matches no route and a request Django refuses before any view answer
# in the API's JSON error shape (api/errors.py); other paths get the pages.
handler404 = "api.errors.not_found"
handler400 = "api.errors.malformed"
