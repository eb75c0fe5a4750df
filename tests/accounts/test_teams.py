from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from keychest.accounts.models import Invitation, Membership, Role, Team
from keychest.accounts.services import (
    invitation_create,
    invitation_token,
    membership_remove,
    membership_set_role,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _link_path(body: str) -> str:
    match = re.search(r"https?://[^/\s]+(/invitations/[^\s]+/)", body)
    assert match, body
    return match.group(1)


def test_owner_invites_and_the_invitee_accepts_by_post(
    people, alice_client: Client, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse("team_invite", args=[people.team_a.uuid]), {"email": "dave@example.org", "role": "admin"}
        )
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["dave@example.org"]
    assert "Team A" in mail.outbox[0].subject
    path = _link_path(mail.outbox[0].body)

    dave = make_user("dave@example.org")
    client = Client()
    client.force_login(dave)
    assert client.get(path).status_code == 200
    assert not Membership.objects.filter(team=people.team_a, user=dave).exists(), "GET must not accept"
    response = client.post(path)
    assert response.status_code == 302
    assert Membership.objects.get(team=people.team_a, user=dave).role == Role.ADMIN
    # The team is now current for dave.
    assert "Team A" in client.get(reverse("dashboard")).content.decode()
    # The link is spent.
    assert client.get(path).status_code == 404


def test_an_invitation_cannot_be_accepted_by_another_address(people, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        invitation_create(team=people.team_a, by=people.alice, email="dave@example.org")
    path = _link_path(mail.outbox[0].body)
    client = Client()
    client.force_login(people.charlie)
    client.post(path)
    assert not Membership.objects.filter(team=people.team_a, user=people.charlie).exists()


def test_a_tampered_or_expired_link_is_refused(people) -> None:
    invitation = invitation_create(team=people.team_a, by=people.alice, email="dave@example.org")
    token = invitation_token(invitation)
    client = Client()
    assert client.get(reverse("invitation_accept", args=[token[:-2] + "xx"])).status_code == 404
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert client.get(reverse("invitation_accept", args=[token])).status_code == 404


def test_a_member_cannot_invite(people, bob_client: Client) -> None:
    bob_client.post(reverse("team_invite", args=[people.team_a.uuid]), {"email": "eve@example.org", "role": "member"})
    assert not Invitation.objects.filter(email="eve@example.org").exists()
    assert mail.outbox == []


def test_an_admin_cannot_make_an_owner(people) -> None:
    Membership.objects.filter(team=people.team_a, user=people.bob).update(role=Role.ADMIN)
    bob_membership = Membership.objects.get(team=people.team_a, user=people.bob)
    with pytest.raises(Exception, match="owner"):
        membership_set_role(membership=bob_membership, role=Role.OWNER, by=people.bob)


def test_roles_can_be_changed_by_the_owner(people, alice_client: Client) -> None:
    bob_membership = Membership.objects.get(team=people.team_a, user=people.bob)
    alice_client.post(reverse("member_role", args=[people.team_a.uuid, bob_membership.uuid]), {"role": "viewer"})
    bob_membership.refresh_from_db()
    assert bob_membership.role == Role.VIEWER


def test_the_last_owner_cannot_step_down_or_leave(people, alice_client: Client) -> None:
    alice_membership = Membership.objects.get(team=people.team_a, user=people.alice)
    alice_client.post(reverse("member_role", args=[people.team_a.uuid, alice_membership.uuid]), {"role": "member"})
    alice_membership.refresh_from_db()
    assert alice_membership.role == Role.OWNER
    alice_client.post(reverse("member_remove", args=[people.team_a.uuid, alice_membership.uuid]))
    assert Membership.objects.filter(pk=alice_membership.pk).exists()


def test_a_second_owner_lets_the_first_leave(people) -> None:
    bob_membership = Membership.objects.get(team=people.team_a, user=people.bob)
    membership_set_role(membership=bob_membership, role=Role.OWNER, by=people.alice)
    alice_membership = Membership.objects.get(team=people.team_a, user=people.alice)
    membership_remove(membership=alice_membership, by=people.alice)
    assert not Membership.objects.filter(team=people.team_a, user=people.alice).exists()


def test_a_member_can_leave_but_not_remove_others(people, bob_client: Client) -> None:
    alice_membership = Membership.objects.get(team=people.team_a, user=people.alice)
    bob_client.post(reverse("member_remove", args=[people.team_a.uuid, alice_membership.uuid]))
    assert Membership.objects.filter(pk=alice_membership.pk).exists()
    bob_membership = Membership.objects.get(team=people.team_a, user=people.bob)
    bob_client.post(reverse("member_remove", args=[people.team_a.uuid, bob_membership.uuid]))
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()


def test_switching_teams_changes_the_dashboard(people, bob_client: Client) -> None:
    bob_personal = Team.objects.get(memberships__user=people.bob, memberships__role=Role.OWNER, is_personal=True)
    assert "Team A" in bob_client.get(reverse("dashboard")).content.decode()
    response = bob_client.post(reverse("team_switch"), {"team": str(bob_personal.uuid), "next": "/dashboard/"})
    assert response.status_code == 302
    assert "bob&#x27;s team" in bob_client.get(reverse("dashboard")).content.decode()


def test_switching_refuses_a_foreign_team_and_an_offsite_next(people, charlie_client: Client) -> None:
    assert charlie_client.post(reverse("team_switch"), {"team": str(people.team_a.uuid)}).status_code == 404
    response = charlie_client.post(reverse("team_switch"), {"team": str(people.team_b.uuid), "next": "//evil.example/"})
    assert response["Location"] == reverse("dashboard")


def test_creating_a_team_makes_the_creator_owner(people, alice_client: Client) -> None:
    alice_client.post(reverse("team_create"), {"name": "Ops"})
    team = Team.objects.get(name="Ops")
    assert Membership.objects.get(team=team, user=people.alice).role == Role.OWNER


def test_team_names_are_escaped(people, alice_client: Client) -> None:
    people.team_a.name = "<script>alert(1)</script>"
    people.team_a.save()
    body = alice_client.get(reverse("team_detail", args=[people.team_a.uuid])).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body
