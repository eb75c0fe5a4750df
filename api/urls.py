"""Routes of the API app: /api/v1.0 (compatibility), /api/v1 (complete), and its pages."""

from __future__ import annotations

from django.urls import include, path

from api import views_pages, views_v10

v10 = [
    path("ping", views_v10.PingView.as_view(), name="v10_ping"),
    path("user", views_v10.UserView.as_view(), name="v10_user"),
    path("access/claim", views_v10.ClaimView.as_view(), name="v10_claim"),
    path("access/claim/<str:email>", views_v10.ClaimGenerateView.as_view(), name="v10_claim_generate"),
    path("servers/add", views_v10.ServerAddView.as_view(), name="v10_servers_add"),
    path("certificate/add", views_v10.CertificateAddView.as_view(), name="v10_certificate_add"),
    path("servers/expiration/<str:domain>", views_v10.ExpirationView.as_view(), name="v10_servers_expiration"),
]

pages = [
    path("settings/api-keys/", views_pages.keys_page, name="api_keys"),
    path("settings/api-keys/new/", views_pages.key_create, name="api_key_create"),
    path("settings/api-keys/<uuid:key_id>/revoke/", views_pages.key_revoke, name="api_key_revoke"),
    path("settings/api-keys/unblock/", views_pages.claims_unblock, name="api_claims_unblock"),
    path("settings/calendar/rotate/", views_pages.calendar_rotate, name="api_calendar_rotate"),
    path("api/claim/<str:token>/<str:action>/", views_pages.claim_decide, name="api_claim_decide"),
]

urlpatterns = [path("api/v1.0/", include(v10)), path("api/v1/", include("api.v1.urls")), *pages]
