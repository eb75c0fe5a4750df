"""Browser pages of the API app: the API keys page (keys, audit log, calendar feed) and the
pages behind the links of claim emails (GET shows, only POST acts)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from api import services
from api.exports import calendar_feed_rotate, calendar_feed_url
from api.models import ApiKey, AuditEntry, ClaimBlock, ClaimKind, Scope
from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role
from keychest.accounts.types import TeamRequest
from keychest.ratelimit import client_ip
from keychest.tenancy import get_for_team_or_404

CLAIM_ACTIONS = {"confirm", "revoke", "block"}


def _keys_context(request: TeamRequest) -> dict[str, object]:
    team = request.team
    membership = request.membership
    keys = ApiKey.objects.for_team(team).select_related("user").order_by("-created_at", "-id")
    return {
        "team": team,
        "keys": keys,
        "is_admin": membership.has_role(Role.ADMIN),
        "can_create": membership.has_role(Role.MEMBER),
        "scopes": Scope.choices,
        "audit": AuditEntry.objects.for_team(team).select_related("user")[:100],
        "blocked": ClaimBlock.objects.filter(email__iexact=request.user.email).exists(),  # type: ignore[union-attr]
        "calendar_url": calendar_feed_url(request.user),  # type: ignore[arg-type]
    }


@team_required()
def keys_page(request: TeamRequest) -> HttpResponse:
    return render(request, "api/keys.html", _keys_context(request))


@team_required(Role.MEMBER)
@require_POST
def key_create(request: TeamRequest) -> HttpResponse:
    try:
        new = services.apikey_create(
            team=request.team,
            user=request.user,
            name=request.POST.get("name", ""),
            scopes=request.POST.getlist("scopes"),
            ip=client_ip(request),
        )
    except (ValidationError, PermissionDenied) as error:
        messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
        return redirect("api_keys")
    # The secret is rendered this once, never stored, never redirected through a URL.
    context = _keys_context(request)
    context["new_key"] = new
    response = render(request, "api/keys.html", context)
    response["Cache-Control"] = "no-store"
    return response


@team_required()
@require_POST
def key_revoke(request: TeamRequest, key_id: str) -> HttpResponse:
    api_key = get_for_team_or_404(ApiKey, request.team, key_id)
    try:
        services.apikey_revoke(api_key=api_key, by=request.user, ip=client_ip(request))
    except PermissionDenied as error:
        messages.error(request, str(error))
        return redirect("api_keys")
    messages.success(request, f"Key {api_key.display_prefix}… revoked.")
    return redirect("api_keys")


@team_required()
@require_POST
def claims_unblock(request: TeamRequest) -> HttpResponse:
    services.claim_unblock(user=request.user, ip=client_ip(request))
    messages.success(request, "Scripts may ask for keys for your address again; each still needs your confirmation.")
    return redirect("api_keys")


@team_required()
@require_POST
def calendar_rotate(request: TeamRequest) -> HttpResponse:
    calendar_feed_rotate(user=request.user)
    messages.success(request, "A new calendar address was made; the old one no longer works.")
    return redirect("api_keys")


def claim_decide(request: HttpRequest, token: str, action: str) -> HttpResponse:
    """GET shows what was asked and one button; POST with that button acts."""
    claim = services.claim_from_token(token)
    if action not in CLAIM_ACTIONS or claim is None or not claim.is_pending():
        return render(request, "api/claim_invalid.html", {"claim": claim}, status=404)
    if action == "revoke" and claim.kind == ClaimKind.NEW_ACCOUNT:
        action = "block"  # an account nobody confirmed has only "confirm" or "block"
    context: dict[str, object] = {
        "claim": claim,
        "action": action,
        "items": services.pending_items(claim.api_key) if claim.api_key else [],
        "needs_password": action == "confirm" and claim.kind == ClaimKind.NEW_ACCOUNT,
    }
    if request.method != "POST":
        return render(request, "api/claim_decide.html", context)
    ip = client_ip(request)
    try:
        if action == "confirm":
            password = request.POST.get("password1", "")
            if password and password != request.POST.get("password2", ""):
                raise ValidationError("The two passwords differ.")
            services.claim_confirm(claim=claim, ip=ip, password=password or None)
            if claim.kind == ClaimKind.NEW_ACCOUNT and password:
                # They proved the mailbox and chose a password: sign them in.
                login(request, claim.user, backend="django.contrib.auth.backends.ModelBackend")
        elif action == "revoke":
            services.claim_revoke(claim=claim, ip=ip)
        else:
            services.claim_block(claim=claim, ip=ip)
    except ValidationError as error:
        context["errors"] = error.messages
        return render(request, "api/claim_decide.html", context, status=400)
    return render(request, "api/claim_done.html", {"claim": claim, "action": action})
