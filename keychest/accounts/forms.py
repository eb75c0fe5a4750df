from __future__ import annotations

import zoneinfo

from django import forms

from keychest.accounts.models import Role

TIMEZONE_CHOICES = [(name, name) for name in sorted(zoneinfo.available_timezones())]


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class PreferencesForm(forms.Form):
    timezone = forms.ChoiceField(choices=TIMEZONE_CHOICES)
    notification_email = forms.EmailField(
        required=False, help_text="Where reports and alerts go; leave empty to use your login email."
    )
