"""The two calls scripts make most — GET /servers/expiration/{domain} and POST /servers/add —
without Django REST framework's per-request machinery, answering byte for byte as the DRF views.

A request takes the lean path only when nothing about it needs DRF: the method the view
serves, an API key in the Authorization header (Bearer or Basic), the `api_key` query
parameter or the body, JSON accepted (no Accept header, `*/*` or `application/json`, no
`format` parameter), and for POST a form or JSON body that parses. Anything else — no key, a
malformed header, another media type, a body DRF would refuse — goes to the DRF view unchanged,
before anything is counted or looked up. Once on the lean path, the key is looked up
(`api.access.key_lookup`: usually from this process's cache), the request is counted against
the per-key and per-address limits (leased hits, usually no round trip), then the view's own
answer function runs (`api.views_v10`) with its first statement carrying the check that a
cached key is still current (`api.keycache.EpochGuard`): so a call costs one statement. When
the check fails the key is looked up again and the answer computed again. Errors are rendered
by the same exception handler as the DRF views (401 with WWW-Authenticate, 429 with
Retry-After).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from api import views_v10
from api.access import Caller, KeyLookup, MalformedAuthorization, api_hits, key_from_header, key_limits, key_lookup
from api.errors import v10_exception_handler
from api.keycache import EpochChanged, EpochGuard
from api.models import ApiKey
from keychest import jsonsafe
from keychest.ratelimit import client_ip

JSON_ACCEPT = frozenset({"", "*/*", "application/json"})
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_RENDERER = JSONRenderer()


def _accepts_json(request: HttpRequest) -> bool:
    return request.META.get("HTTP_ACCEPT", "").strip() in JSON_ACCEPT and "format" not in request.GET


def _body(request: HttpRequest) -> Any | None:
    """The parsed body as DRF's JSON and form parsers would give it, or None to leave it to DRF."""
    content_type = request.META.get("CONTENT_TYPE", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == FORM:
        return request.POST
    if media_type == JSON:
        params = dict(part.strip().split("=", 1) for part in content_type.split(";")[1:] if "=" in part)
        charset = params.get("charset", "utf-8").strip('"').lower()
        if charset not in ("utf-8", "utf8"):
            return None
        try:
            return jsonsafe.loads(request.body.decode("utf-8"))
        except ValueError:  # malformed, too deeply nested, not UTF-8
            return None  # DRF answers the parse error
    return None


def _key(request: HttpRequest, data: Any) -> str | None:
    """The key, from where `api.access.key_from_request` looks, in the same order."""
    try:
        header_key = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
    except MalformedAuthorization:
        return None  # DRF answers the 401
    if header_key:
        return header_key
    query_key = request.GET.get("api_key")
    if query_key:
        return query_key
    if isinstance(data, dict | QueryDict):
        body_key = data.get("api_key")
        if isinstance(body_key, str) and body_key:
            return body_key
    return None


class LeanView:
    """Serve `view_class`'s `method` leanly when possible, else hand the request to DRF."""

    def __init__(self, view_class: type[APIView], method: str, answer: Callable[..., tuple[dict[str, Any], int]]):
        self.view_class = view_class
        self.method = method
        self.answer = answer
        self.drf_view = view_class.as_view()
        instance = view_class()
        if hasattr(instance, "get") and not hasattr(instance, "head"):
            instance.head = instance.get  # type: ignore[attr-defined]  # as View.setup() does, so Allow lists HEAD like DRF's
        self.allow = ", ".join(instance.allowed_methods)
        self.vary = len(instance.renderer_classes) > 1
        self.auth_header = 'Bearer realm="KeyChest API"'

    def __call__(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method != self.method or not _accepts_json(request):
            return self.drf_view(request, **kwargs)
        data = None
        if self.method == "POST":
            data = _body(request)
            if data is None:
                return self.drf_view(request, **kwargs)
        secret = _key(request, data)
        if secret is None:
            return self.drf_view(request, **kwargs)
        try:
            ip = client_ip(request)
            key = key_lookup(secret)
            wait = api_hits(key_limits(ip=ip, key_id=key.record.key_id))
            if wait:
                raise exceptions.Throttled(wait)
            answered = self._answer_checked(request, key, data, ip, kwargs) if key.cached else None
            if answered is None:  # looked up now, or the cached key's epoch had moved on
                key = key.reloaded() if key.cached else key
                answered = self._answer(request, key.api_key, data, ip, kwargs)
        except exceptions.APIException as exc:
            return self._error(request, exc)
        key.touch(ip)
        return self._respond(*answered)

    def _answer_checked(
        self, request: HttpRequest, key: KeyLookup, data: Any, ip: str, kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], int] | None:
        """The answer for a cached key, its first statement checking that the key's epoch is
        still current; None when it is not (nothing ran)."""
        guard = EpochGuard(key.record.epoch)  # type: ignore[arg-type]  # cached entries have one
        try:
            with connection.execute_wrapper(guard):
                answered = self._answer(request, key.api_key, data, ip, kwargs)
                guard.finish()
        except EpochChanged:
            return None
        return answered

    def _answer(
        self, request: HttpRequest, api_key: ApiKey, data: Any, ip: str, kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        # As DRF's Request does, the underlying request carries the authenticated user and key.
        request.user = api_key.user
        request.auth = api_key  # type: ignore[attr-defined]
        caller = Caller(user=api_key.user, team=api_key.team, role=api_key.member_role, api_key=api_key)  # type: ignore[attr-defined]
        if self.method == "POST":
            return self.answer(caller, data, ip)
        return self.answer(caller, **kwargs)

    def _respond(self, body: Any, status: int, headers: dict[str, str] | None = None) -> HttpResponse:
        response = HttpResponse(_RENDERER.render(body), status=status, content_type=JSON)
        for name, value in (headers or {}).items():
            response[name] = value
        if self.vary:
            patch_vary_headers(response, ["Accept"])
        response["Allow"] = self.allow
        return response

    def _error(self, request: HttpRequest, exc: exceptions.APIException) -> HttpResponse:
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            exc.auth_header = self.auth_header  # type: ignore[union-attr]
        handled = v10_exception_handler(exc, {"view": None, "request": request})
        assert handled is not None
        # WWW-Authenticate, Retry-After; the content type is the renderer's, as in DRF.
        headers = {name: value for name, value in handled.items() if name.lower() != "content-type"}
        return self._respond(handled.data, handled.status_code, headers)


def lean_view(view_class: type[APIView], method: str, answer: Callable[..., tuple[dict[str, Any], int]]) -> Any:
    """A URL callback for `view_class` that the schema generator still sees as that DRF view."""
    lean = LeanView(view_class, method, answer)

    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return lean(request, **kwargs)

    view.cls = view_class  # type: ignore[attr-defined]  # what DRF's and drf-spectacular's enumerators read
    view.initkwargs = {}  # type: ignore[attr-defined]
    view.view_class = view_class  # type: ignore[attr-defined]
    return csrf_exempt(view)


servers_expiration = lean_view(views_v10.ExpirationView, "GET", views_v10.expiration_answer)
servers_add = lean_view(views_v10.ServerAddView, "POST", views_v10.server_add_answer)
