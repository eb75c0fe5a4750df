from __future__ import annotations

from django.urls import path

from notifications import views

urlpatterns = [
    path("notifications/channels/", views.channel_list, name="channel_list"),
    path("notifications/channels/<uuid:channel_id>/", views.channel_detail, name="channel_detail"),
    path("notifications/channels/<uuid:channel_id>/test/", views.channel_test, name="channel_test"),
    path("notifications/channels/<uuid:channel_id>/enable/", views.channel_enable, name="channel_enable"),
    path("notifications/channels/<uuid:channel_id>/secret/", views.channel_secret, name="channel_secret"),
    path("notifications/channels/<uuid:channel_id>/delete/", views.channel_delete, name="channel_delete"),
    path("account/notifications/", views.preferences, name="notification_preferences"),
    path("notifications/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("notifications/recipients/<str:token>/", views.recipient_confirm, name="recipient_confirm"),
]
