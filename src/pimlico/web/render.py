"""Pages: the templates, times in the viewer's zone, and errors in plain words.

``page`` renders a template with what every page needs (the viewer, the CSRF token, the
confirmation left by the previous action, the clock face). ``Problem`` turns a
``PimlicoError`` into what a person reads: what went wrong, each rule that failed, and what
to do about it. This module calls no use case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from pimlico.api.deps import runtime_of
from pimlico.errors import FieldError, InvalidInput, PimlicoError
from pimlico.web import session
from pimlico.web.session import Viewer

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
)
templates = Jinja2Templates(env=_environment)


def span(delta: timedelta) -> str:
    """A length of time as people say it: ``2 h 14 min``, ``3 d 4 h``, ``less than a
    minute``."""
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return "less than a minute"


@dataclass(frozen=True)
class ClockFace:
    """Instants as the viewer reads them: relative words, the exact time in their zone on
    hover, and the machine-readable instant for scripts and tests."""

    now: datetime
    zone: ZoneInfo

    def exact(self, at: datetime) -> str:
        local = at.astimezone(self.zone)
        return local.strftime("%a %d %b %Y, %H:%M ") + (local.tzname() or "")

    def _time(self, at: datetime, words: str) -> Markup:
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
            at.isoformat(), self.exact(at), words
        )

    def ends(self, at: datetime | None) -> Markup:
        """``ends in 2 h 14 min`` (or ``ended 5 min ago``; ``never ends``)."""
        if at is None:
            return Markup("never ends")
        if at > self.now:
            return self._time(at, f"ends in {span(at - self.now)}")
        return self._time(at, f"ended {span(self.now - at)} ago")

    def when(self, at: datetime | None) -> Markup:
        """``in 3 h`` or ``5 min ago``, the exact time on hover."""
        if at is None:
            return Markup("—")
        if at > self.now:
            return self._time(at, f"in {span(at - self.now)}")
        return self._time(at, f"{span(self.now - at)} ago")

    def at(self, at: datetime | None) -> Markup:
        """The exact time in the viewer's zone."""
        if at is None:
            return Markup("—")
        return self._time(at, self.exact(at))


_WHAT_TO_DO: dict[str, str] = {
    "MfaRule": "Verify a code from your authenticator app, then submit again.",
    "MfaStepUpRequired": "Verify a code from your authenticator app, then submit again.",
    "MfaNotEnrolled": "Set up an authenticator app under Security first.",
    "MfaCodeInvalid": "Type the 6-digit code your authenticator app shows now.",
    "MfaCodeReused": "Wait for the next code from your authenticator app.",
    "MfaLocked": "Too many wrong codes: wait a few minutes before trying again.",
    "JustificationRule": "Say why you need it.",
    "TicketingRule": "Give the ticket system and the ticket number.",
    "ExpirationRule": "Ask for a duration the policy allows.",
    "EligibilityRule": "You are not eligible for this; ask an administrator.",
    "RoleAssignmentExists": "It is already in force: nothing to do.",
    "RoleAssignmentDoesNotExist": "It is no longer in force: refresh the page.",
    "ActiveDurationTooShort": "Ask for at least 5 minutes.",
    "PermissionDenied": "Activate a role that allows this, or ask an administrator.",
    "Conflict": "Someone changed it meanwhile: reload the page and try again.",
    "PreconditionFailed": "Someone changed it meanwhile: reload the page and try again.",
    "NotFound": "It may have been removed; go back and reload.",
    "TooManyAttempts": "Too many attempts: wait a few minutes before trying again.",
    "LastGlobalAdministrator": "Make someone else Global Administrator first.",
    "AlreadyExists": "Choose another name.",
}


@dataclass(frozen=True)
class Problem:
    """A refusal as a person reads it."""

    code: str
    message: str
    fields: tuple[FieldError, ...]
    what_to_do: str | None
    status: int

    @classmethod
    def of(cls, error: PimlicoError) -> Problem:
        fields = tuple(error.errors) if isinstance(error, InvalidInput) else ()
        hints = [_WHAT_TO_DO[f.rule] for f in fields if f.rule in _WHAT_TO_DO]
        hint = " ".join(dict.fromkeys(hints)) or _WHAT_TO_DO.get(error.code)
        return cls(error.code, error.message, fields, hint, error.status)

    @property
    def needs_step_up(self) -> bool:
        """Did it fail for want of a fresh MFA verification (offer "Verify now")?"""
        return self.code == "MfaStepUpRequired" or any(f.rule == "MfaRule" for f in self.fields)

    def about(self, field_name: str) -> list[FieldError]:
        """The rules ``field_name`` broke (to show beside that field)."""
        return [f for f in self.fields if f.field == field_name]


def _return_to(request: Request) -> str:
    """The page to come back to after a step-up: this one, or for an answer to a form, the
    page the form was on (its same-origin referrer)."""
    if request.method == "GET":
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return session.safe_next(here)
    referrer = urlsplit(request.headers.get("referer", ""))
    if referrer.netloc != request.url.netloc:
        return "/portal/"
    return session.safe_next(referrer.path + (f"?{referrer.query}" if referrer.query else ""))


def page(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered for ``viewer`` (``None``: a page before sign-in)."""
    rt = runtime_of(request)
    zone = viewer.zone if viewer is not None else session.viewer_zone(request)
    csrf = viewer.csrf_token if viewer is not None else None
    response = HTMLResponse("")
    if csrf is None:
        csrf = session.csrf_token_for(session.presession_key(request, response))
    message = session.take_flash(request, response)
    rendered = templates.TemplateResponse(
        request,
        template,
        {
            "viewer": viewer,
            "csrf_token": csrf,
            "csrf_field": session.CSRF_FIELD,
            "flash": message,
            "clock": ClockFace(rt.clock.now(), zone),
            "span": span,
            "problem": None,
            "return_to": _return_to(request),
            **context,
        },
        status_code=status,
    )
    for key, value in response.headers.items():
        if key == "set-cookie":
            rendered.headers.append(key, value)
    return rendered
