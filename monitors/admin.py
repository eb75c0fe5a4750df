from __future__ import annotations

from django.contrib import admin

from monitors.models import (
    DiscoveredHost,
    DomainRegistration,
    Finding,
    RdapServer,
    ScanResult,
    Server,
    WatchedDomain,
)


@admin.register(WatchedDomain)
class WatchedDomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "team", "include_subdomains", "auto_watch", "removed_at"]
    search_fields = ["domain"]


@admin.register(DiscoveredHost)
class DiscoveredHostAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "first_seen_at", "last_seen_at", "watched_at"]
    search_fields = ["name"]


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ["host", "port", "protocol", "team", "paused", "removed_at", "next_scan_at", "last_scan_at"]
    search_fields = ["host"]
    list_filter = ["protocol", "paused"]


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    list_display = ["code", "severity", "server", "address", "first_seen", "last_seen", "resolved_at"]
    list_filter = ["code", "severity"]


@admin.register(ScanResult)
class ScanResultAdmin(admin.ModelAdmin):
    list_display = ["server", "address", "leaf_sha256", "error_code", "first_seen", "last_seen", "current"]


@admin.register(DomainRegistration)
class DomainRegistrationAdmin(admin.ModelAdmin):
    list_display = [
        "domain",
        "status",
        "expires_at",
        "registrar",
        "last_checked_at",
        "next_check_at",
        "last_error_code",
    ]
    search_fields = ["domain", "registrar"]
    list_filter = ["status", "last_error_code"]


@admin.register(RdapServer)
class RdapServerAdmin(admin.ModelAdmin):
    list_display = ["base_url", "failures", "backoff_until", "last_success_at", "last_error"]
