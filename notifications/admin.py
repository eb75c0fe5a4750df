from __future__ import annotations

from django.contrib import admin

from notifications.models import Channel, Delivery, DeliveryAttempt, Event, NotificationPreferences, ReportSend


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["kind", "subject", "team", "severity", "occurred_at", "dispatched_at"]
    list_filter = ["kind", "severity"]
    search_fields = ["subject", "dedup_key"]


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "team", "enabled", "deleted_at"]
    list_filter = ["kind", "enabled"]
    exclude = ["secret"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["uuid", "channel", "status", "attempts", "send_after", "sent_at"]
    list_filter = ["status"]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = ["delivery", "started_at", "ok", "status_code", "duration_ms", "error"]


@admin.register(NotificationPreferences)
class NotificationPreferencesAdmin(admin.ModelAdmin):
    list_display = ["user", "weekly_report_enabled", "weekly_report_day", "weekly_report_hour", "digest_mode"]


@admin.register(ReportSend)
class ReportSendAdmin(admin.ModelAdmin):
    list_display = ["user", "kind", "period", "status", "attempts", "sent_at"]
    list_filter = ["kind", "status"]
