"""Team rename and delete: owners only, deletion confirmed by the name, nothing of another team
touched; one owner never has two teams of one name (issue 14 item 12)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from keychest.accounts.models import Membership, Role, Team
from keychest.accounts.services import team_create
from monitors.models import Server

pytestmark = pytest.mark.django_db


def test_an_owner_renames_and_a_member_cannot(people, alice_client, bob_client) -> None:
    url = reverse("team_rename", args=[people.team_a.uuid])
    bob_client.post(url, {"name": "Bob's idea"})
    assert Team.objects.get(pk=people.team_a.pk).name == "Team A"
    alice_client.post(url, {"name": "Operations"})
    assert Team.objects.get(pk=people.team_a.pk).name == "Operations"


def test_one_owner_cannot_have_two_teams_of_one_name(people, alice_client, charlie_client) -> None:
    page = alice_client.post(reverse("team_create"), {"name": "team a"}, follow=True).content.decode()
    assert "You already own a team called “team a”" in page
    assert Team.objects.filter(name__iexact="team a").count() == 1
    other = team_create(name="Staging", owner=people.alice)
    alice_client.post(reverse("team_rename", args=[other.uuid]), {"name": "TEAM A"})
    assert Team.objects.get(pk=other.pk).name == "Staging"
    # Another owner may use the same name.
    charlie_client.post(reverse("team_create"), {"name": "Team A"})
    assert Team.objects.filter(name="Team A").count() == 2


def test_delete_needs_an_owner_and_the_typed_name_and_touches_no_other_team(
    people, alice_client, bob_client, charlie_client
) -> None:
    team = team_create(name="Short-lived", owner=people.alice)
    Membership.objects.create(team=team, user=people.bob, role=Role.ADMIN)
    Server.objects.create(team=team, host="gone.example.com")
    Server.objects.create(team=people.team_a, host="kept-a.example.com")
    Server.objects.create(team=people.team_b, host="kept-b.example.com")
    url = reverse("team_delete", args=[team.uuid])
    assert charlie_client.post(url, {"confirm": "Short-lived"}).status_code == 404  # not his team
    bob_client.post(url, {"confirm": "Short-lived"})  # an admin, not an owner
    alice_client.post(url, {"confirm": "short lived"})  # not the name
    assert Team.objects.filter(pk=team.pk).exists()
    page = alice_client.post(url, {"confirm": "Short-lived"}, follow=True).content.decode()
    assert "“Short-lived” and everything it watched are deleted" in page
    assert not Team.objects.filter(pk=team.pk).exists()
    assert not Server.objects.filter(host="gone.example.com").exists()
    assert sorted(Server.objects.values_list("host", flat=True)) == ["kept-a.example.com", "kept-b.example.com"]


def test_a_personal_team_stays(people, alice_client) -> None:
    alice_client.post(reverse("team_delete", args=[people.team_a.uuid]), {"confirm": "Team A"})
    assert Team.objects.filter(pk=people.team_a.pk).exists()
    page = alice_client.get(reverse("team_detail", args=[people.team_a.uuid])).content.decode()
    assert 'data-testid="team-rename"' in page and "it cannot be deleted" in page
