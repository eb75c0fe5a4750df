"""django.contrib.admin's app config with keychest.adminsite as admin.site (kept apart from the
site itself: settings import this module before the app registry is ready)."""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class KeyChestAdminConfig(AdminConfig):
    """django.contrib.admin with KeyChestAdminSite as admin.site."""

    default_site = "keychest.adminsite.KeyChestAdminSite"
