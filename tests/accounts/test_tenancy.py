"""charlie (team B) gets 404 for every team-A page and cannot change anything in team A."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from keychest.accounts.models import Invitation, Membership, Role
from keychest.accounts.services import invitation_create

pytestmark = pytest.mark.django_db


def test_charlie_gets_404_for_every_team_a_page(people, charlie_client: Client) -> None:
    invitation = invitation_create(team=people.team_a, by=people.alice, email="dave@example.org")
    bob_membership = Membership.objects.get(team=people.team_a, user=people.bob)
    team = people.team_a.uuid
    gets = [reverse("team_detail", args=[team])]
    posts = [
        (reverse("team_invite", args=[team]), {"email": "mallory@example.org", "role": "owner"}),
        (reverse("invitation_revoke", args=[team, invitation.uuid]), {}),
        (reverse("member_role", args=[team, bob_membership.uuid]), {"role": "owner"}),
        (reverse("member_remove", args=[team, bob_membership.uuid]), {}),
        (reverse("team_switch"), {"team": str(team)}),
    ]
    for url in gets:
        assert charlie_client.get(url).status_code == 404, url
    for url, data in posts:
        assert charlie_client.post(url, data).status_code == 404, url
    bob_membership.refresh_from_db()
    assert bob_membership.role == Role.MEMBER
    assert not Invitation.objects.filter(email="mallory@example.org").exists()
    assert Invitation.objects.get(pk=invitation.pk).revoked_at is None


def test_charlie_cannot_act_on_team_a_members_through_his_own_team_url(people, charlie_client: Client) -> None:
    bob_membership = Membership.objects.get(team=people.team_a, user=people.bob)
    url = reverse("member_remove", args=[people.team_b.uuid, bob_membership.uuid])
    assert charlie_client.post(url).status_code == 404
    assert Membership.objects.filter(pk=bob_membership.pk).exists()


def test_anonymous_visitors_are_sent_to_sign_in(people) -> None:
    client = Client()
    for url in [reverse("dashboard"), reverse("team_list"), reverse("team_detail", args=[people.team_a.uuid])]:
        response = client.get(url)
        assert response.status_code == 302
        assert reverse("account_login") in response["Location"]


def test_for_user_scopes_rows_to_the_users_teams(people) -> None:
    from monitors.models import WatchedDomain

    WatchedDomain.objects.create(team=people.team_a, domain="a.example")
    WatchedDomain.objects.create(team=people.team_b, domain="b.example")
    assert list(WatchedDomain.objects.for_user(people.bob).values_list("domain", flat=True)) == ["a.example"]
    assert list(WatchedDomain.objects.for_team(people.team_b).values_list("domain", flat=True)) == ["b.example"]
