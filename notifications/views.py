"""Pages: the team's notification channels, the user's notification preferences, unsubscribe."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from keychest.accounts.decorators import team_required
from keychest.accounts.models import Membership, Role, User
from keychest.accounts.types import TeamRequest
from keychest.tenancy import get_for_team_or_404
from notifications import recipients, services
from notifications.forms import ChannelForm, NotificationPreferencesForm
from notifications.models import Channel, ChannelKind, DeliveryAttempt, DigestMode, EventKind, NotificationPreferences
from notifications.unsubscribe import LISTS, address_unsubscribe_read, unsubscribe_read


def _live_channels(request: TeamRequest):  # type: ignore[no-untyped-def]
    return Channel.objects.for_team(request.team).filter(deleted_at=None)


def _member_choices(request: TeamRequest) -> list[tuple[str, str]]:
    return [
        (str(m.user.uuid), m.user.email)
        for m in Membership.objects.filter(team=request.team).select_related("user").order_by("user__email")
    ]


@team_required(Role.VIEWER)
def channel_list(request: TeamRequest) -> HttpResponse:
    can_manage = request.membership.has_role(Role.ADMIN)
    members = _member_choices(request)
    form = ChannelForm(members=members, initial={"kind": ChannelKind.EMAIL})
    if request.method == "POST":
        if not can_manage:
            messages.error(request, "Only admins and owners can add channels.")
            return redirect("channel_list")
        form = ChannelForm(request.POST, members=members)
        if form.is_valid():
            data = form.cleaned_data
            chosen = User.objects.filter(
                uuid__in=data["email_members"],
                memberships__team=request.team,
            )
            channel = services.channel_create(
                team=request.team,
                kind=data["kind"],
                name=data["name"],
                url=data["url"] or "",
                email_all_members=data["email_all_members"],
                email_members=chosen,
                email_addresses=data["email_addresses"],
                event_kinds=data["event_kinds"],
                rate_limit_per_hour=data["rate_limit_per_hour"],
                grouping_seconds=data["grouping_seconds"],
                apprise_url=data["apprise_url"],
            )
            messages.success(request, f"Channel “{channel.name}” added. Send a test to check it.")
            return redirect("channel_detail", channel_id=channel.uuid)
    channels = _live_channels(request).order_by("name", "id")
    return render(
        request,
        "notifications/channel_list.html",
        {"channels": channels, "form": form, "can_manage": can_manage, "team": request.team},
    )


@team_required(Role.VIEWER)
def channel_detail(request: TeamRequest, channel_id: str) -> HttpResponse:
    """The channel. A webhook's signing secret shows masked; an admin's POST `reveal=secret`
    shows it in full in that one answer (never cached, never in a URL: security finding 8)."""
    channel = get_for_team_or_404(_live_channels(request), request.team, channel_id)
    can_manage = request.membership.has_role(Role.ADMIN)
    reveal = request.method == "POST" and request.POST.get("reveal") == "secret"
    if reveal and not can_manage:
        raise PermissionDenied("Only admins see the signing secret.")
    deliveries = list(channel.deliveries.order_by("-created_at", "-id")[:20])
    attempts = (
        DeliveryAttempt.objects.filter(delivery__channel=channel)
        .select_related("delivery")
        .order_by("-started_at", "-id")[:50]
    )
    response = render(
        request,
        "notifications/channel_detail.html",
        {
            "channel": channel,
            "deliveries": deliveries,
            "attempts": attempts,
            "can_manage": can_manage,
            "secret_revealed": reveal,
            "kinds": [EventKind(k).label for k in channel.event_kinds if k in EventKind.values],
            "members": channel.email_members.all(),
            "waiting": recipients.waiting_addresses(channel) if channel.kind == ChannelKind.EMAIL else [],
        },
    )
    if reveal:
        response["Cache-Control"] = "no-store"
    return response


def recipient_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """An outside address agrees to get a team's alerts: GET explains, only POST confirms."""
    confirmation = recipients.recipient_from_token(token)
    if confirmation is None:
        return render(request, "accounts/address_confirm.html", {"invalid": True}, status=404)
    confirmed = request.method == "POST"
    if confirmed:
        recipients.recipient_confirm(confirmation=confirmation)
    return render(
        request,
        "accounts/address_confirm.html",
        {"email": confirmation.email, "purpose": "team", "confirmed": confirmed},
    )


def _admin_channel(request: TeamRequest, channel_id: str) -> Channel:
    return get_for_team_or_404(_live_channels(request), request.team, channel_id)


@team_required(Role.ADMIN)
@require_POST
def channel_test(request: TeamRequest, channel_id: str) -> HttpResponse:
    channel = _admin_channel(request, channel_id)
    if not channel.enabled:
        messages.error(request, "Enable the channel first.")
    else:
        try:
            services.channel_send_test(channel=channel)
        except services.ChannelRateLimited as error:
            messages.error(request, f"Not sent: {error}.")
        else:
            messages.success(request, "Test message queued; its attempt appears below within seconds.")
    return redirect("channel_detail", channel_id=channel.uuid)


@team_required(Role.ADMIN)
@require_POST
def channel_enable(request: TeamRequest, channel_id: str) -> HttpResponse:
    channel = _admin_channel(request, channel_id)
    services.channel_enable(channel=channel)
    messages.success(request, "Channel enabled.")
    return redirect("channel_detail", channel_id=channel.uuid)


@team_required(Role.ADMIN)
@require_POST
def channel_secret(request: TeamRequest, channel_id: str) -> HttpResponse:
    channel = _admin_channel(request, channel_id)
    services.channel_rotate_secret(channel=channel)
    messages.success(request, "New signing secret created; update your receiver.")
    return redirect("channel_detail", channel_id=channel.uuid)


@team_required(Role.ADMIN)
@require_POST
def channel_delete(request: TeamRequest, channel_id: str) -> HttpResponse:
    channel = _admin_channel(request, channel_id)
    services.channel_delete(channel=channel)
    messages.success(request, f"Channel “{channel.name}” deleted.")
    return redirect("channel_list")


@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    prefs = services.preferences_for(user=request.user)  # type: ignore[arg-type]
    if request.method == "POST":
        form = NotificationPreferencesForm(request.POST)
        if form.is_valid():
            services.preferences_update(user=request.user, **form.cleaned_data)  # type: ignore[arg-type]
            messages.success(request, "Notification preferences saved.")
            return redirect("notification_preferences")
    else:
        form = NotificationPreferencesForm(
            initial={
                "weekly_report_enabled": prefs.weekly_report_enabled,
                "weekly_report_day": prefs.weekly_report_day,
                "weekly_report_hour": prefs.weekly_report_hour,
                "send_all_good": prefs.send_all_good,
                "digest_mode": prefs.digest_mode,
                "alert_kinds": prefs.alert_kinds or list(EventKind.values),
            }
        )
    return render(
        request,
        "notifications/preferences.html",
        {
            "form": form,
            "timezone": request.user.timezone,  # type: ignore[union-attr]
            "reach": services.alert_email_reach(user=request.user),  # type: ignore[arg-type]
            "alerts_off": prefs.digest_mode == DigestMode.OFF,
        },
    )


@csrf_exempt  # RFC 8058: mail clients POST without cookies or a CSRF token; the signed token is the proof
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a confirmation page (link scanners follow GETs); only POST unsubscribes."""
    parsed = unsubscribe_read(token)
    if parsed is None:
        return _unsubscribe_address(request, token)
    user = User.objects.filter(uuid=parsed[0]).first()
    if user is None:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=404)
    what = parsed[1]
    if request.method == "POST":
        prefs, _ = NotificationPreferences.objects.get_or_create(user=user)
        if what == "weekly":
            prefs.weekly_report_enabled = False
            prefs.save(update_fields=["weekly_report_enabled", "updated_at"])
        else:
            # "off" sends no alert email at all, immediate or daily: both links mean that.
            prefs.digest_mode = DigestMode.OFF
            prefs.save(update_fields=["digest_mode", "updated_at"])
        return render(request, "notifications/unsubscribe.html", {"done": True, "what": LISTS[what]})
    return render(request, "notifications/unsubscribe.html", {"what": LISTS[what], "email": user.email})


def _unsubscribe_address(request: HttpRequest, token: str) -> HttpResponse:
    """An extra address of an email channel leaves that channel (it has no account to configure)."""
    parsed = address_unsubscribe_read(token)
    channel = (
        Channel.objects.select_related("team").filter(uuid=parsed[0], kind=ChannelKind.EMAIL).first()
        if parsed
        else None
    )
    if parsed is None or channel is None:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=404)
    address = parsed[1]
    what = f"alert emails of the channel “{channel.name}” of {channel.team.name}"
    if request.method == "POST":
        services.channel_remove_address(channel=channel, address=address)
        return render(request, "notifications/unsubscribe.html", {"done": True, "what": what, "address": True})
    return render(request, "notifications/unsubscribe.html", {"what": what, "email": address, "address": True})
