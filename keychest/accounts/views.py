"""Team pages: list and switch teams, members and roles, invitations, preferences."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from keychest.accounts import services
from keychest.accounts.forms import InviteForm, PreferencesForm, RoleForm, TeamForm
from keychest.accounts.middleware import SESSION_KEY
from keychest.accounts.models import Invitation, Membership, Role, Team
from keychest.accounts.types import AuthedRequest


def _my_membership(request: AuthedRequest, team_id: str) -> Membership:
    """The user's membership in a team given by public id; 404 when not a member."""
    try:
        membership = Membership.objects.select_related("team").filter(user=request.user, team__uuid=team_id).first()
    except ValidationError:
        membership = None
    if membership is None:
        raise Http404("No such team")
    return membership


def _error_message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error) or "Not allowed."


@login_required
def team_list(request: AuthedRequest) -> HttpResponse:
    memberships = (
        Membership.objects.filter(user=request.user)
        .select_related("team")
        .annotate(member_count=Count("team__memberships"))
        .order_by("team__name", "id")
    )
    return render(request, "accounts/team_list.html", {"memberships": memberships, "form": TeamForm()})


@login_required
@require_POST
def team_create(request: AuthedRequest) -> HttpResponse:
    form = TeamForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A team needs a name of at most 100 characters.")
        return redirect("team_list")
    try:
        team = services.team_create(name=form.cleaned_data["name"], owner=request.user)
    except ValidationError as error:
        messages.error(request, _error_message(error))
        return redirect("team_list")
    request.session[SESSION_KEY] = str(team.uuid)
    messages.success(request, f"Team “{team.name}” created.")
    return redirect("team_detail", team_id=team.uuid)


@login_required
@require_POST
def team_switch(request: AuthedRequest) -> HttpResponse:
    membership = _my_membership(request, request.POST.get("team", ""))
    request.session[SESSION_KEY] = str(membership.team.uuid)
    next_url = request.POST.get("next") or reverse("dashboard")
    if not next_url.startswith("/") or next_url.startswith("//"):
        next_url = reverse("dashboard")
    return redirect(next_url)


@login_required
def team_detail(request: AuthedRequest, team_id: str) -> HttpResponse:
    membership = _my_membership(request, team_id)
    team = membership.team
    members = Membership.objects.filter(team=team).select_related("user").order_by("created_at", "id")
    invitations = [i for i in Invitation.objects.filter(team=team, accepted_at=None, revoked_at=None) if i.is_pending()]
    return render(
        request,
        "accounts/team_detail.html",
        {
            "team": team,
            "membership": membership,
            "members": members,
            "invitations": invitations,
            "can_manage": membership.has_role(Role.ADMIN),
            "is_owner": membership.role == Role.OWNER,
            "invite_form": InviteForm(),
            "roles": Role.choices,
        },
    )


@login_required
@require_POST
def team_rename(request: AuthedRequest, team_id: str) -> HttpResponse:
    membership = _my_membership(request, team_id)
    form = TeamForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A team needs a name of at most 100 characters.")
    else:
        try:
            team = services.team_rename(team=membership.team, by=request.user, name=form.cleaned_data["name"])
            messages.success(request, f"The team is now called “{team.name}”.")
        except (PermissionDenied, ValidationError) as error:
            messages.error(request, _error_message(error))
    return redirect("team_detail", team_id=membership.team.uuid)


@login_required
@require_POST
def team_delete(request: AuthedRequest, team_id: str) -> HttpResponse:
    membership = _my_membership(request, team_id)
    name = membership.team.name
    try:
        services.team_delete(team=membership.team, by=request.user, confirm_name=request.POST.get("confirm", ""))
    except (PermissionDenied, ValidationError) as error:
        messages.error(request, _error_message(error))
        return redirect("team_detail", team_id=membership.team.uuid)
    if request.session.get(SESSION_KEY) == str(team_id):
        request.session.pop(SESSION_KEY, None)
    messages.success(request, f"Team “{name}” and everything it watched are deleted.")
    return redirect("team_list")


@login_required
@require_POST
def team_invite(request: AuthedRequest, team_id: str) -> HttpResponse:
    membership = _my_membership(request, team_id)
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a valid email address and role.")
    else:
        try:
            services.invitation_create(
                team=membership.team, by=request.user, email=form.cleaned_data["email"], role=form.cleaned_data["role"]
            )
            messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
        except (PermissionDenied, ValidationError) as error:
            messages.error(request, _error_message(error))
    return redirect("team_detail", team_id=membership.team.uuid)


@login_required
@require_POST
def invitation_revoke(request: AuthedRequest, team_id: str, invitation_id: str) -> HttpResponse:
    membership = _my_membership(request, team_id)
    invitation = Invitation.objects.filter(team=membership.team, uuid=invitation_id).first()
    if invitation is None:
        raise Http404("No such invitation")
    try:
        services.invitation_revoke(invitation=invitation, by=request.user)
        messages.success(request, f"Invitation to {invitation.email} revoked.")
    except PermissionDenied as error:
        messages.error(request, _error_message(error))
    return redirect("team_detail", team_id=membership.team.uuid)


def _target_membership(team: Team, member_id: str) -> Membership:
    # member_id comes through the <uuid:> URL converter, so it is always a valid UUID.
    target = Membership.objects.filter(team=team, uuid=member_id).select_related("user").first()
    if target is None:
        raise Http404("No such member")
    return target


@login_required
@require_POST
def member_role(request: AuthedRequest, team_id: str, member_id: str) -> HttpResponse:
    membership = _my_membership(request, team_id)
    target = _target_membership(membership.team, member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown role.")
    else:
        try:
            services.membership_set_role(membership=target, role=form.cleaned_data["role"], by=request.user)
            messages.success(request, f"{target.user.email} is now {form.cleaned_data['role']}.")
        except (PermissionDenied, ValidationError) as error:
            messages.error(request, _error_message(error))
    return redirect("team_detail", team_id=membership.team.uuid)


@login_required
@require_POST
def member_remove(request: AuthedRequest, team_id: str, member_id: str) -> HttpResponse:
    membership = _my_membership(request, team_id)
    target = _target_membership(membership.team, member_id)
    try:
        services.membership_remove(membership=target, by=request.user)
    except (PermissionDenied, ValidationError) as error:
        messages.error(request, _error_message(error))
        return redirect("team_detail", team_id=membership.team.uuid)
    if target.user_id == request.user.pk:
        request.session.pop(SESSION_KEY, None)
        messages.success(request, f"You left “{membership.team.name}”.")
        return redirect("team_list")
    messages.success(request, f"{target.user.email} removed.")
    return redirect("team_detail", team_id=membership.team.uuid)


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows the invitation; only POST (signed in as the invited address) joins the team."""
    invitation = services.invitation_from_token(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('account_login')}?next={request.path}")
        try:
            membership = services.invitation_accept(invitation=invitation, user=request.user)  # type: ignore[arg-type]
        except (PermissionDenied, ValidationError) as error:
            messages.error(request, _error_message(error))
            return redirect(request.path)
        request.session[SESSION_KEY] = str(membership.team.uuid)
        messages.success(request, f"You joined “{membership.team.name}”.")
        return redirect("dashboard")
    return render(request, "accounts/invitation_accept.html", {"invitation": invitation})


def notification_email_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what confirming means; only POST confirms (mail scanners follow links). No
    sign-in: the holder of the address confirms, who may not be the user."""
    found = services.notification_email_from_token(token)
    if found is None:
        return render(request, "accounts/address_confirm.html", {"invalid": True}, status=404)
    user, email = found
    confirmed = request.method == "POST" and services.notification_email_confirm(user=user, email=email)
    return render(
        request,
        "accounts/address_confirm.html",
        {"email": email, "purpose": "personal", "confirmed": confirmed},
    )


@login_required
def preferences(request: AuthedRequest) -> HttpResponse:
    user = request.user
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            try:
                services.user_update_preferences(
                    user=user,
                    timezone_name=form.cleaned_data["timezone"],
                    notification_email=form.cleaned_data["notification_email"],
                )
                messages.success(request, "Preferences saved.")
                return redirect("preferences")
            except ValidationError as error:
                form.add_error(None, error)
    else:
        form = PreferencesForm(initial={"timezone": user.timezone, "notification_email": user.notification_email})
    waiting = bool(user.notification_email) and user.notification_email_confirmed_at is None
    return render(request, "accounts/preferences.html", {"form": form, "waiting": waiting})
