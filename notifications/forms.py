from __future__ import annotations

from typing import Any

from django import forms

from notifications.apprise_urls import InvalidAppriseUrl, apprise_url_check
from notifications.models import ChannelKind, DigestMode, EventKind, Weekday


class ChannelForm(forms.Form):
    kind = forms.ChoiceField(choices=ChannelKind.choices)
    name = forms.CharField(max_length=100, required=False)
    url = forms.URLField(max_length=2000, required=False, assume_scheme="https", help_text="Webhook or Slack URL.")
    apprise_url = forms.CharField(
        max_length=2000, required=False, strip=True, label="Apprise URL", widget=forms.PasswordInput(render_value=False)
    )
    email_all_members = forms.BooleanField(required=False, initial=True, label="Every member of the team")
    email_members = forms.MultipleChoiceField(required=False, choices=(), label="Or these members")
    email_addresses = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Extra addresses, one per line."
    )
    event_kinds = forms.MultipleChoiceField(
        required=False,
        choices=EventKind.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked means every kind.",
    )
    rate_limit_per_hour = forms.IntegerField(min_value=1, max_value=10000, initial=20)
    grouping_seconds = forms.IntegerField(min_value=0, max_value=86400, initial=60)

    def __init__(self, *args: Any, members: list[tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email_members"].choices = members or []  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
            url = data.get("url") or ""
            if not url.lower().startswith(("https://", "http://")):
                self.add_error("url", "A webhook needs an http(s) URL.")
        if kind == ChannelKind.APPRISE:
            try:
                apprise_url_check(data.get("apprise_url") or "")
            except InvalidAppriseUrl as error:
                self.add_error("apprise_url", str(error))
        if kind == ChannelKind.EMAIL:
            for line in (data.get("email_addresses") or "").splitlines():
                if line.strip():
                    try:
                        forms.EmailField().clean(line.strip())
                    except forms.ValidationError:
                        self.add_error("email_addresses", f"Not an email address: {line.strip()[:80]}")
            if not data.get("email_all_members") and not data.get("email_members") and not data.get("email_addresses"):
                self.add_error("email_members", "Choose members or addresses, or every member.")
        return data


class NotificationPreferencesForm(forms.Form):
    weekly_report_enabled = forms.BooleanField(required=False, label="Send me the weekly report")
    weekly_report_day = forms.TypedChoiceField(choices=Weekday.choices, coerce=int, label="Report day")
    weekly_report_hour = forms.TypedChoiceField(
        choices=[(h, f"{h:02d}:00") for h in range(24)], coerce=int, label="Report hour (your time zone)"
    )
    send_all_good = forms.BooleanField(required=False, label="Send a short “all good” report when nothing is due")
    digest_mode = forms.ChoiceField(choices=DigestMode.choices, label="Alert emails")
    alert_kinds = forms.MultipleChoiceField(
        required=False, choices=EventKind.choices, widget=forms.CheckboxSelectMultiple, label="Alert kinds"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("digest_mode") != DigestMode.OFF and not data.get("alert_kinds"):
            self.add_error("alert_kinds", "Choose at least one kind, or set alert emails to off.")
        return data
