"""The team's issuance policy page: which CAs and keys it expects, and the CAA records read for
its watched domains. A certificate logged in CT that breaks the policy raises an
`unexpected_issuance` alert (monitors/issuance.py)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render

from kcproto.issuance import pins_from_text
from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role
from keychest.accounts.types import TeamRequest
from monitors.issuance import issuance_policy_set
from monitors.models import IssuancePolicy, WatchedDomain


class IssuancePolicyForm(forms.Form):
    allowed_issuers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Allowed CAs",
        help_text="One per line: a CAA issuer domain (letsencrypt.org, pki.goog, digicert.com) or text of the "
        "issuer name (Example Corp Issuing CA). Empty: any CA.",
    )
    known_keys = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Known keys",
        help_text="The keys you deploy: paste PEM certificates or public keys, or one SHA-256 of a "
        "SubjectPublicKeyInfo in hex per line. Saved as hex pins. Empty: any key.",
    )
    check_caa = forms.BooleanField(
        required=False, label="A CA that the domain's CAA record does not authorise is unexpected"
    )


@team_required()
def issuance_policy(request: TeamRequest) -> HttpResponse:
    team = request.team
    can_edit = request.membership.has_role(Role.ADMIN)
    policy = IssuancePolicy.objects.for_team(team).first()
    initial = {
        "allowed_issuers": "\n".join(policy.allowed_issuers) if policy else "",
        "known_keys": "\n".join(policy.known_keys) if policy else "",
        "check_caa": policy.check_caa if policy else True,
    }
    form = IssuancePolicyForm(initial=initial)
    if request.method == "POST":
        if not can_edit:
            return HttpResponse("Only admins and owners can change the issuance policy.", status=403)
        form = IssuancePolicyForm(request.POST)
        if form.is_valid():
            try:
                issuance_policy_set(
                    team=team,
                    allowed_issuers=form.cleaned_data["allowed_issuers"].splitlines(),
                    known_keys=pins_from_text(form.cleaned_data["known_keys"]),
                    check_caa=form.cleaned_data["check_caa"],
                )
            except ValueError as error:
                form.add_error(None, str(error))
                if "PRIVATE KEY" in form.cleaned_data["known_keys"]:
                    # A private key pasted by mistake is never shown back.
                    form.data = {**form.data.dict(), "known_keys": ""}  # type: ignore[attr-defined]
            else:
                messages.success(request, "Issuance policy saved.")
                return redirect("issuance_policy")
    domains = WatchedDomain.objects.for_team(team).filter(removed_at=None).order_by("domain")
    return render(
        request,
        "dashboard/domains/policy.html",
        {"team": team, "form": form, "can_edit": can_edit, "domains": domains[:500]},
    )
