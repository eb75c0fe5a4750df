from __future__ import annotations

from django.contrib import admin

from notifications.models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["kind", "subject", "team", "severity", "occurred_at"]
    list_filter = ["kind", "severity"]
    search_fields = ["subject", "dedup_key"]
