from __future__ import annotations

from django.contrib import admin

from monitors.models import DiscoveredHost, WatchedDomain


@admin.register(WatchedDomain)
class WatchedDomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "team", "include_subdomains", "auto_watch", "removed_at"]
    search_fields = ["domain"]


@admin.register(DiscoveredHost)
class DiscoveredHostAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "first_seen_at", "last_seen_at", "watched_at"]
    search_fields = ["name"]
