from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "keychest.accounts"
    label = "accounts"
    verbose_name = "Accounts and teams"
    default_auto_field = "django.db.models.BigAutoField"
