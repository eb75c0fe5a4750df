"""Security finding 4: an invitation carries its sender's authority, and that authority ends with
the sender's membership or role. Alice makes bob an admin, bob invites eve as admin, alice
removes (or demotes) bob: eve's link no longer makes her an admin."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from keychest.accounts.models import Invitation, Membership, Role
from keychest.accounts.services import invitation_accept, invitation_create
from tests.conftest import People, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_admin(people: People, alice_client: Client) -> Membership:
    membership = Membership.objects.get(team=people.team_a, user=people.bob)
    response = alice_client.post(
        reverse("member_role", args=[people.team_a.uuid, membership.uuid]), {"role": Role.ADMIN}
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    return membership


def _invite(client: Client, team_uuid: object, email: str, role: str, capture) -> str:  # type: ignore[no-untyped-def]
    with capture(execute=True):
        response = client.post(reverse("team_invite", args=[team_uuid]), {"email": email, "role": role})
    assert response.status_code == 302
    body = mail.outbox[-1].body
    match = re.search(r"https?://[^/\s]+(/invitations/[^\s]+/)", body)
    assert match, body
    return match.group(1)


def _eve_accepts(path: str) -> Client:
    eve = Client()
    eve.force_login(make_user("eve@example.org"))
    eve.post(path)
    return eve


def test_removing_the_sender_revokes_the_invitation(
    people: People, bob_admin: Membership, bob_client: Client, alice_client: Client, django_capture_on_commit_callbacks
) -> None:
    path = _invite(bob_client, people.team_a.uuid, "eve@example.org", Role.ADMIN, django_capture_on_commit_callbacks)
    alice_client.post(reverse("member_remove", args=[people.team_a.uuid, bob_admin.uuid]))
    assert not Membership.objects.filter(team=people.team_a, user=people.bob).exists()

    assert Client().get(path).status_code == 404, "the link is dead"
    _eve_accepts(path)
    assert not Membership.objects.filter(team=people.team_a, user__email="eve@example.org").exists()
    assert Invitation.objects.get(email="eve@example.org").revoked_at is not None


def test_demoting_the_sender_revokes_invitations_above_the_new_role(
    people: People, bob_admin: Membership, bob_client: Client, alice_client: Client, django_capture_on_commit_callbacks
) -> None:
    admin_link = _invite(
        bob_client, people.team_a.uuid, "eve@example.org", Role.ADMIN, django_capture_on_commit_callbacks
    )
    member_link = _invite(
        bob_client, people.team_a.uuid, "dave@example.org", Role.MEMBER, django_capture_on_commit_callbacks
    )
    alice_client.post(reverse("member_role", args=[people.team_a.uuid, bob_admin.uuid]), {"role": Role.MEMBER})

    _eve_accepts(admin_link)
    assert not Membership.objects.filter(team=people.team_a, user__email="eve@example.org").exists()
    # An invitation no higher than what bob still holds gives nothing bob could not: it stays.
    dave = Client()
    dave.force_login(make_user("dave@example.org"))
    dave.post(member_link)
    assert Membership.objects.get(team=people.team_a, user__email="dave@example.org").role == Role.MEMBER


def test_accepting_rechecks_the_sender_however_their_role_changed(people: People, bob_admin: Membership) -> None:
    """Belt and braces: a role changed outside the services (the admin, SQL) is caught at accept."""
    invitation = invitation_create(team=people.team_a, by=people.bob, email="eve@example.org", role=Role.ADMIN)
    Membership.objects.filter(pk=bob_admin.pk).update(role=Role.VIEWER)
    eve = make_user("eve@example.org")
    with pytest.raises(Exception, match="no longer valid"):
        invitation_accept(invitation=invitation, user=eve)
    assert not Membership.objects.filter(team=people.team_a, user=eve).exists()


def test_the_owners_invitations_outlive_other_peoples_changes(people: People, bob_admin: Membership) -> None:
    invitation = invitation_create(team=people.team_a, by=people.alice, email="eve@example.org", role=Role.ADMIN)
    Membership.objects.filter(pk=bob_admin.pk).delete()
    membership = invitation_accept(invitation=invitation, user=make_user("eve@example.org"))
    assert membership.role == Role.ADMIN
