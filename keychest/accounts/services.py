"""Writes that touch users, teams, memberships and invitations (one transaction each)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from keychest.accounts import emails
from keychest.accounts.models import Invitation, Membership, Role, Team, User, role_at_least
from keychest.ratelimit import Limit, hit

INVITATION_SALT = "keychest.accounts.invitation"

# What the apps above this platform layer set up for every new team (the notifications app adds
# its "email every member" channel), run inside team_create's transaction. Apps register in
# their AppConfig.ready(); the platform never imports them.
TEAM_SETUP: list[Callable[..., object]] = []


def team_setup_register(setup: Callable[..., object]) -> None:
    """`setup(team=...)` runs for every team created from now on."""
    if setup not in TEAM_SETUP:
        TEAM_SETUP.append(setup)


def _name_taken(*, owner: User, name: str, exclude: Team | None = None) -> bool:
    """The rule for team names: one person never owns two teams of the same name (case aside),
    so the team switcher never offers two look-alikes. Teams of other owners may share a name."""
    owned = Team.objects.filter(memberships__user=owner, memberships__role=Role.OWNER, name__iexact=name)
    if exclude is not None:
        owned = owned.exclude(pk=exclude.pk)
    return owned.exists()


def team_create(*, name: str, owner: User, is_personal: bool = False) -> Team:
    name = name.strip()
    if not name:
        raise ValidationError("A team needs a name.")
    if _name_taken(owner=owner, name=name[:100]):
        raise ValidationError(f"You already own a team called “{name[:100]}”; choose another name.")
    with transaction.atomic():
        team = Team.objects.create(name=name[:100], is_personal=is_personal)
        Membership.objects.create(team=team, user=owner, role=Role.OWNER)
        for setup in TEAM_SETUP:
            setup(team=team)
    return team


def team_rename(*, team: Team, by: User, name: str) -> Team:
    """Owners only; the name follows team_create's rule."""
    _require_owner(team=team, user=by)
    name = name.strip()[:100]
    if not name:
        raise ValidationError("A team needs a name.")
    if _name_taken(owner=by, name=name, exclude=team):
        raise ValidationError(f"You already own a team called “{name}”; choose another name.")
    Team.objects.filter(pk=team.pk).update(name=name)
    team.name = name
    return team


def team_delete(*, team: Team, by: User, confirm_name: str) -> None:
    """Owners only, confirmed by typing the team's name. Everything the team owns goes with it
    (every tenant row cascades from its team); no other team's rows are touched. A personal
    team stays: every account keeps one."""
    _require_owner(team=team, user=by)
    if team.is_personal:
        raise ValidationError("Your personal team cannot be deleted; delete the servers in it instead.")
    if confirm_name.strip() != team.name:
        raise ValidationError("Type the team's name exactly to confirm the deletion.")
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=team.pk).delete()


def _require_owner(*, team: Team, user: User) -> None:
    if not Membership.objects.filter(team=team, user=user, role=Role.OWNER).exists():
        raise PermissionDenied("Only an owner of the team can rename or delete it.")


def personal_team_ensure(*, user: User) -> Team:
    """The user's personal team, created on first need (signup, API claim, createsuperuser)."""
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update()
            .filter(user=user, team__is_personal=True, role=Role.OWNER)
            .select_related("team")
            .first()
        )
        if membership is not None:
            return membership.team
        local_part = user.email.split("@", 1)[0] or "My"
        return team_create(name=f"{local_part}'s team", owner=user, is_personal=True)


def user_create(*, email: str, password: str | None = None, **fields: Any) -> User:
    """A user with a personal team; used by admin tooling and by the API claim flow."""
    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password, **fields)
        personal_team_ensure(user=user)
    return user


def _require_role(*, team: Team, user: User, minimum: str) -> Membership:
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is None or not membership.has_role(minimum):
        raise PermissionDenied("Your role in this team does not allow this.")
    return membership


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps(str(invitation.uuid), salt=INVITATION_SALT)


def invitation_from_token(token: str) -> Invitation | None:
    """The invitation a link names, or None if the link is forged, too old or not pending."""
    max_age = settings.KEYCHEST_INVITATION_MAX_AGE_DAYS * 86400
    try:
        public_id = signing.loads(token, salt=INVITATION_SALT, max_age=max_age)
    except signing.BadSignature:
        return None
    invitation = Invitation.objects.select_related("team", "invited_by").filter(uuid=public_id).first()
    if invitation is None or not invitation.is_pending():
        return None
    return invitation


def invitation_create(*, team: Team, by: User, email: str, role: str = Role.MEMBER) -> Invitation:
    """Invite an address; owners may invite owners, admins may invite up to admin."""
    acting = _require_role(team=team, user=by, minimum=Role.ADMIN)
    if role not in Role.values:
        raise ValidationError("Unknown role.")
    if role == Role.OWNER and acting.role != Role.OWNER:
        raise PermissionDenied("Only an owner can invite an owner.")
    email = email.strip().lower()
    if Membership.objects.filter(team=team, user__email__iexact=email).exists():
        raise ValidationError(f"{email} is already a member of this team.")
    # Each invitation emails the address: a budget per address, across teams, so KeyChest is no
    # relay for repeated mail to one inbox (security finding 7).
    per_address = Limit("invite-address", settings.KEYCHEST_INVITATIONS_PER_ADDRESS_PER_DAY, 86400)
    if not hit(per_address, email).allowed:
        raise ValidationError(f"{email} was invited too often today; try again tomorrow.")
    with transaction.atomic():
        # A second invitation to the same address replaces the first.
        Invitation.objects.filter(team=team, email=email, accepted_at=None, revoked_at=None).update(
            revoked_at=timezone.now()
        )
        invitation = Invitation.objects.create(team=team, email=email, role=role, invited_by=by)
        link = settings.SITE_URL + reverse("invitation_accept", args=[invitation_token(invitation)])
        transaction.on_commit(lambda: emails.invitation(invitation, link))
    return invitation


def invitation_revoke(*, invitation: Invitation, by: User) -> None:
    _require_role(team=invitation.team, user=by, minimum=Role.ADMIN)
    Invitation.objects.filter(pk=invitation.pk, accepted_at=None).update(revoked_at=timezone.now())


def _sender_still_grants(invitation: Invitation) -> bool:
    """The sender is still in the team with at least the invited role (security finding 4: the
    services revoke on removal and demotion; this also catches roles changed behind them)."""
    if invitation.invited_by_id is None:  # the sender deleted their account
        return False
    sender = Membership.objects.filter(team_id=invitation.team_id, user_id=invitation.invited_by_id).first()
    return sender is not None and role_at_least(sender.role, invitation.role)


def _invitations_revoke_above(*, team: Team, sender_id: int, role: str | None) -> int:
    """Revoke the sender's pending invitations of a higher role than `role` (None: all of them)."""
    pending = Invitation.objects.filter(team=team, invited_by_id=sender_id, accepted_at=None, revoked_at=None)
    above = [r for r in Role.values if role is None or not role_at_least(role, r)]
    return pending.filter(role__in=above).update(revoked_at=timezone.now())


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """Join the team; the accepting user must own the invited address (a verified email)."""
    from allauth.account.models import EmailAddress

    if not EmailAddress.objects.filter(user=user, email__iexact=invitation.email, verified=True).exists():
        raise PermissionDenied(f"This invitation is for {invitation.email}; sign in with that address.")
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not locked.is_pending() or not _sender_still_grants(locked):
            raise ValidationError("This invitation is no longer valid.")
        membership, _created = Membership.objects.get_or_create(
            team=locked.team, user=user, defaults={"role": locked.role}
        )
        locked.accepted_at = timezone.now()
        locked.accepted_by = user
        locked.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def _owner_count(team: Team) -> int:
    return Membership.objects.filter(team=team, role=Role.OWNER).count()


def membership_set_role(*, membership: Membership, role: str, by: User) -> Membership:
    """Change a role. Only owners grant or take away ownership; a team keeps one owner."""
    if role not in Role.values:
        raise ValidationError("Unknown role.")
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=membership.team_id)
        acting = _require_role(team=team, user=by, minimum=Role.ADMIN)
        target = Membership.objects.select_for_update().get(pk=membership.pk)
        touches_owner = Role.OWNER in (role, target.role)
        if touches_owner and acting.role != Role.OWNER:
            raise PermissionDenied("Only an owner can grant or remove ownership.")
        if target.role == Role.OWNER and role != Role.OWNER and _owner_count(team) <= 1:
            raise ValidationError("A team must keep at least one owner.")
        target.role = role
        target.save(update_fields=["role"])
        _invitations_revoke_above(team=team, sender_id=target.user_id, role=role)
    return target


def membership_remove(*, membership: Membership, by: User) -> None:
    """Remove a member (admins and owners), or leave (anyone may remove themselves)."""
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=membership.team_id)
        target = Membership.objects.select_for_update().get(pk=membership.pk)
        if target.user_id != by.pk:
            acting = _require_role(team=team, user=by, minimum=Role.ADMIN)
            if target.role == Role.OWNER and acting.role != Role.OWNER:
                raise PermissionDenied("Only an owner can remove an owner.")
            if not role_at_least(acting.role, target.role):
                raise PermissionDenied("You cannot remove someone with a higher role.")
        if target.role == Role.OWNER and _owner_count(team) <= 1:
            raise ValidationError("A team must keep at least one owner.")
        target.delete()
        _invitations_revoke_above(team=team, sender_id=target.user_id, role=None)


def user_update_preferences(*, user: User, timezone_name: str, notification_email: str) -> User:
    """Save the preferences. A new notification_email takes effect once its holder confirms it
    (unless it is one of the user's verified addresses); saving again while it waits sends the
    link again, within the address's budget."""
    email = notification_email.strip().lower()
    if email != user.notification_email:
        verified = bool(email) and _is_verified_address(user, email)
        user.notification_email_confirmed_at = timezone.now() if verified else None
    user.timezone = timezone_name
    user.notification_email = email
    user.full_clean(validate_unique=False, exclude=["password"])
    with transaction.atomic():
        user.save(update_fields=["timezone", "notification_email", "notification_email_confirmed_at"])
        if email and user.notification_email_confirmed_at is None:
            notification_email_confirm_request(user=user)
    return user


# --- confirming outside recipients (security finding 7) ------------------------------------
NOTIFICATION_EMAIL_SALT = "keychest.accounts.notification-email"
CONFIRMATION_MAX_AGE_DAYS = 7


def _is_verified_address(user: User, email: str) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()


def address_confirmation_send(*, to: str, link: str, purpose: str) -> bool:
    """The one email a new outside recipient gets before anything else: a link to confirm. At
    most KEYCHEST_CONFIRMATIONS_PER_ADDRESS_PER_DAY per address, whoever asks; False beyond.
    Sent after commit. `purpose` is "personal" (a user's notification email) or "team"."""
    budget = Limit("confirm-address", settings.KEYCHEST_CONFIRMATIONS_PER_ADDRESS_PER_DAY, 86400)
    if not hit(budget, to.lower()).allowed:
        return False
    transaction.on_commit(lambda: emails.address_confirmation(to=to, link=link, purpose=purpose))
    return True


def notification_email_confirm_request(*, user: User) -> bool:
    """Email the confirmation link to the user's notification_email (within its budget)."""
    token = signing.dumps({"u": str(user.uuid), "e": user.notification_email}, salt=NOTIFICATION_EMAIL_SALT)
    link = settings.SITE_URL + reverse("notification_email_confirm", args=[token])
    return address_confirmation_send(to=user.notification_email, link=link, purpose="personal")


def notification_email_from_token(token: str) -> tuple[User, str] | None:
    """(user, address) a confirmation link names, while that address is still the user's
    unconfirmed notification_email; None for forged, old or stale links."""
    try:
        data = signing.loads(token, salt=NOTIFICATION_EMAIL_SALT, max_age=CONFIRMATION_MAX_AGE_DAYS * 86400)
    except signing.BadSignature:
        return None
    user = User.objects.filter(uuid=data.get("u"), is_active=True, notification_email=data.get("e")).first()
    if user is None or not user.notification_email:
        return None
    return user, user.notification_email


def notification_email_confirm(*, user: User, email: str) -> bool:
    """The holder of `email` confirmed it; True if it is (still) the user's notification email."""
    confirmed = User.objects.filter(pk=user.pk, notification_email=email).update(
        notification_email_confirmed_at=timezone.now()
    )
    return bool(confirmed)
