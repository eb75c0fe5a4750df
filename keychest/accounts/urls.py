from __future__ import annotations

from django.urls import path

from keychest.accounts import views

urlpatterns = [
    path("teams/", views.team_list, name="team_list"),
    path("teams/new/", views.team_create, name="team_create"),
    path("teams/switch/", views.team_switch, name="team_switch"),
    path("teams/<uuid:team_id>/", views.team_detail, name="team_detail"),
    path("teams/<uuid:team_id>/invite/", views.team_invite, name="team_invite"),
    path("teams/<uuid:team_id>/rename/", views.team_rename, name="team_rename"),
    path("teams/<uuid:team_id>/delete/", views.team_delete, name="team_delete"),
    path(
        "teams/<uuid:team_id>/invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("teams/<uuid:team_id>/members/<uuid:member_id>/role/", views.member_role, name="member_role"),
    path("teams/<uuid:team_id>/members/<uuid:member_id>/remove/", views.member_remove, name="member_remove"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path(
        "account/notification-email/<str:token>/",
        views.notification_email_confirm,
        name="notification_email_confirm",
    ),
    path("account/preferences/", views.preferences, name="preferences"),
]
