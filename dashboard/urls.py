"""URLs of the dashboard and the team's certificate and domain pages."""

from __future__ import annotations

from django.urls import path, register_converter

from dashboard import agent_pages, policy_pages, range_pages, views
from dashboard import certificate_pages as pages
from dashboard import domain_pages as pages_domains


class Sha256Converter:
    regex = "[0-9a-fA-F]{64}"

    def to_python(self, value: str) -> str:
        return value.lower()

    def to_url(self, value: str) -> str:
        return value


register_converter(Sha256Converter, "sha256")


class HashPrefixConverter(Sha256Converter):
    """The first 12 or more hex digits of a fingerprint, as findings and timelines quote them."""

    regex = "[0-9a-fA-F]{12,63}"


register_converter(HashPrefixConverter, "sha256prefix")

urlpatterns = [
    path("agents/", agent_pages.agent_list, name="agent_list"),
    path("ranges/", range_pages.range_list, name="range_list"),
    path("ranges/<uuid:range_id>/", range_pages.range_detail, name="range_detail"),
    path("ranges/<uuid:range_id>/watch/", range_pages.range_watch, name="range_watch"),
    path("ranges/<uuid:range_id>/remove/", range_pages.range_remove_view, name="range_remove"),
    path("agents/assign/", agent_pages.agent_assign_view, name="agent_assign"),
    path("agents/<uuid:agent_id>/revoke/", agent_pages.agent_revoke_view, name="agent_revoke"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("certificates/", pages.certificate_list, name="certificate_list"),
    path("certificates/<sha256:sha256>/", pages.certificate_detail, name="certificate_detail"),
    path("certificates/<sha256:sha256>/pem/", pages.certificate_pem, name="certificate_pem"),
    path("certificates/<sha256prefix:prefix>/", pages.certificate_by_prefix, name="certificate_by_prefix"),
    path("domains/", pages_domains.domain_list, name="domain_list"),
    path("domains/add/", pages_domains.domain_add, name="domain_add"),
    path("domains/policy/", policy_pages.issuance_policy, name="issuance_policy"),
    path("domains/<uuid:domain_id>/", pages_domains.domain_detail, name="domain_detail"),
    path("domains/<uuid:domain_id>/remove/", pages_domains.domain_remove, name="domain_remove"),
    path("domains/<uuid:domain_id>/auto-watch/", pages_domains.domain_auto_watch, name="domain_auto_watch"),
    path(
        "domains/<uuid:domain_id>/hosts/<uuid:host_id>/watch/",
        pages_domains.domain_host_watch,
        name="domain_host_watch",
    ),
]
