"""The mail console's browser pages: plain HTML forms, no JavaScript.

Routes (none collides with the JSON routes ``/quarantine`` and ``/messages/{id}/purge``):

- ``GET /``: the sign-in form, or, signed in, the suspicious messages with a Purge button each;
- ``POST /web/sign-in``: signs in to Pimlico (``POST /api/v1/auth/sign-in``) with the user
  name and password, keeps the Pimlico session token in the console's cookie;
- ``POST /web/sign-out``: ends that Pimlico session (``POST /api/v1/auth/sign-out``) and drops
  the cookie;
- ``POST /web/messages/{id}/purge``: needs ``mail.purge`` at ``/apps/mail``: "Purged" (200)
  or "You need the Search and Purge role" (403);
- ``GET /web/quarantine``: needs ``security.read``: the quarantine report, or "You need the
  Security Reader role" (403).

As with the JSON routes, who the caller is comes from Pimlico (``GET /api/v1/me`` with the
caller's token) and what the caller may do is Pimlico's ``check``, asked with the console's
own token (``allowed``, given by ``app.py``). The cookie is ``HttpOnly``, ``SameSite=Strict``
and ``Secure`` when served over HTTPS; every form that acts also carries a CSRF token, an
HMAC of the session under a key the console makes at start (a restart asks people to reload
the page, nothing more). The sign-in form carries none: it acts on no session.

It must not decide anything itself: no roles, no permissions, no cache of answers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Cookie, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import DictLoader, Environment

from pimlico.client import ApiError, Client

COOKIE = "mail_console_session"

Allowed = Callable[[str, str, int | None], bool]
"""``allowed(principal_id, permission, revision)``: Pimlico's answer for the console scope."""


@dataclass(frozen=True)
class Person:
    """The signed-in person: their Pimlico principal id and the name to show."""

    principal_id: str
    name: str


@dataclass(frozen=True)
class Message:
    """A suspicious message in the (pretend) mailbox."""

    id: str
    sender: str
    subject: str
    received: str


MESSAGES = (
    Message("msg-1", "billing@examp1e-payments.com", "Invoice overdue", "09:12"),
    Message("msg-2", "it-helpdesk@example-support.net", "Reset your password today", "10:47"),
    Message("msg-3", "ceo@examp1e.org", "Urgent wire transfer <confidential>", "11:03"),
)

_PAGES = {
    "layout.html": """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · Mail security console</title>
<link rel="stylesheet" href="/web/style.css">
</head>
<body>
<header>
  <strong>Mail security console</strong>
  {% if user %}
  <form method="post" action="/web/sign-out" class="inline">
    <span>Signed in as {{ user }}</span>
    <input type="hidden" name="csrf" value="{{ csrf }}">
    <button type="submit">Sign out</button>
  </form>
  {% endif %}
</header>
<main>
{% block main %}{% endblock %}
</main>
</body>
</html>
""",
    "sign_in.html": """{% extends "layout.html" %}{% block main %}
<h1>Sign in</h1>
<p>Sign in with your Pimlico account.</p>
{% if error %}<p role="alert" class="error">{{ error }}</p>{% endif %}
<form method="post" action="/web/sign-in">
  <label for="user_name">User name</label>
  <input id="user_name" name="user_name" autocomplete="username" required value="{{ user_name }}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <label for="code">Code from your authenticator app (if your account uses MFA)</label>
  <input id="code" name="code" inputmode="numeric" autocomplete="one-time-code">
  <button type="submit">Sign in</button>
</form>
{% endblock %}""",
    "mailbox.html": """{% extends "layout.html" %}{% block main %}
<h1>Suspicious messages</h1>
<p><a href="/web/quarantine">Quarantine report</a></p>
<table>
  <thead><tr><th>From</th><th>Subject</th><th>Received</th><th></th></tr></thead>
  <tbody>
  {% for m in messages %}
  <tr>
    <td>{{ m.sender }}</td><td>{{ m.subject }}</td><td>{{ m.received }}</td>
    <td>
      <form method="post" action="/web/messages/{{ m.id }}/purge">
        <input type="hidden" name="csrf" value="{{ csrf }}">
        <button type="submit" aria-label="Purge {{ m.subject }}">Purge</button>
      </form>
    </td>
  </tr>
  {% endfor %}
  </tbody>
</table>
{% endblock %}""",
    "outcome.html": """{% extends "layout.html" %}{% block main %}
<h1>{{ title }}</h1>
<p{% if refused %} role="alert" class="error"{% endif %}>{{ text }}</p>
{% if refused and pimlico %}
<p>Activate it in <a href="{{ pimlico }}">Pimlico</a>, then try again.</p>
{% endif %}
{% if items %}<ul>{% for m in items %}<li>{{ m.subject }} ({{ m.sender }})</li>{% endfor %}</ul>
{% endif %}
<p><a href="/">Back to the messages</a></p>
{% endblock %}""",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center;
  justify-content: space-between; padding: .75rem 1rem; background: #12355b; color: #fff; }
main { padding: 1rem; max-width: 60rem; }
form.inline { display: flex; gap: .5rem; align-items: center; }
label { display: block; margin-top: .75rem; }
input { font: inherit; padding: .4rem; width: 100%; max-width: 20rem; box-sizing: border-box; }
button { font: inherit; padding: .4rem .9rem; margin-top: .5rem; cursor: pointer; }
:focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem; border-bottom: 1px solid #ddd; }
.error { color: #8b0000; font-weight: 600; }
@media (max-width: 600px) {
  thead { display: none; }
  tr, td { display: block; border: 0; padding: .15rem 0; }
  tr { border-bottom: 1px solid #ddd; padding: .5rem 0; }
}
"""

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def router(
    *, pimlico_url: str, allowed: Allowed, transport: httpx.BaseTransport | None = None
) -> APIRouter:
    """The browser pages, asking Pimlico at ``pimlico_url`` through ``allowed``."""
    pages = Environment(loader=DictLoader(_PAGES), autoescape=True)
    csrf_key = secrets.token_bytes(32)
    web = APIRouter(include_in_schema=False)
    portal = f"{pimlico_url.rstrip('/')}/portal/"

    def csrf_of(token: str) -> str:
        return hmac.new(csrf_key, token.encode(), hashlib.sha256).hexdigest()

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("user", None)
        return HTMLResponse(pages.get_template(name).render(**values), status, _HEADERS)

    def sign_in_page(error: str | None = None, status: int = 200, user_name: str = "") -> Response:
        page = render("sign_in.html", status, title="Sign in", error=error, user_name=user_name)
        page.delete_cookie(COOKIE, path="/")
        return page

    def who(token: str | None) -> Person | None:
        """Who holds ``token`` (Pimlico says), or ``None`` when the session is not valid."""
        if not token:
            return None
        with httpx.Client(
            base_url=pimlico_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
            transport=transport,
        ) as http:
            me = http.get("/api/v1/me")
            if me.status_code != 200:
                return None
            principal = me.json()["principal_id"]
            # Anyone may read their own record; the name people know beats an id.
            record = http.get(f"/api/v1/users/{principal}")
            if record.status_code != 200:
                return Person(principal, me.json()["name"])
            return Person(principal, record.json()["display_name"])

    def act(
        token: str | None,
        csrf: str,
        permission: str,
        refusal: str,
        done: Callable[[Person, str], Response],
    ) -> Response:
        """Run ``done(me, csrf)`` if the session is valid, the form is genuine and Pimlico
        allows ``permission``; otherwise the page that says which of the three failed."""
        me = who(token)
        if token is None or me is None:
            return sign_in_page("Your sign-in has ended. Sign in again.", 401)
        expected = csrf_of(token)
        if not hmac.compare_digest(csrf, expected):
            return render(
                "outcome.html",
                403,
                title="Refused",
                refused=True,
                text="This form has expired. Go back, reload the page and try again.",
                user=me.name,
                csrf=expected,
            )
        if not allowed(me.principal_id, permission, None):
            return render(
                "outcome.html",
                403,
                title="Refused",
                refused=True,
                text=refusal,
                pimlico=portal,
                user=me.name,
                csrf=expected,
            )
        return done(me, expected)

    @web.get("/web/style.css")
    def style() -> Response:
        return Response(_STYLE, media_type="text/css", headers={"Cache-Control": "max-age=300"})

    @web.get("/")
    def home(token: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        if token is None:
            return sign_in_page()
        me = who(token)
        if me is None:
            return sign_in_page("Your sign-in has ended. Sign in again.")
        return render(
            "mailbox.html",
            title="Suspicious messages",
            messages=MESSAGES,
            user=me.name,
            csrf=csrf_of(token),
        )

    @web.post("/web/sign-in")
    def sign_in(
        request: Request,
        user_name: Annotated[str, Form()],
        password: Annotated[str, Form()],
        code: Annotated[str, Form()] = "",
    ) -> Response:
        try:
            with Client(pimlico_url, transport=transport) as pimlico:
                issued = pimlico.sign_in(user_name, password, code.strip() or None)
        except ApiError as refused:
            if refused.code == "MfaCodeRequired":
                return sign_in_page(
                    "Type the code from your authenticator app too.", 401, user_name
                )
            if refused.status == 401:
                return sign_in_page("The user name or the password is wrong.", 401, user_name)
            return sign_in_page(refused.detail or "Pimlico refused the sign-in.", 400, user_name)
        signed_in = RedirectResponse("/", status_code=303)
        signed_in.set_cookie(
            COOKIE,
            issued.token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return signed_in

    @web.post("/web/sign-out")
    def sign_out(
        csrf: Annotated[str, Form()] = "",
        token: Annotated[str | None, Cookie(alias=COOKIE)] = None,
    ) -> Response:
        if token is not None and hmac.compare_digest(csrf, csrf_of(token)):
            try:
                with Client(pimlico_url, token, transport=transport) as pimlico:
                    pimlico.sign_out()
            except ApiError:
                pass  # already ended in Pimlico: dropping the cookie is all that is left
        signed_out = RedirectResponse("/", status_code=303)
        signed_out.delete_cookie(COOKIE, path="/")
        return signed_out

    @web.post("/web/messages/{message_id}/purge")
    def purge(
        message_id: str,
        csrf: Annotated[str, Form()] = "",
        token: Annotated[str | None, Cookie(alias=COOKIE)] = None,
    ) -> Response:
        message = next((m for m in MESSAGES if m.id == message_id), None)

        def purged(me: Person, csrf: str) -> Response:
            if message is None:
                return render(
                    "outcome.html",
                    404,
                    title="Not found",
                    refused=True,
                    text="There is no such message.",
                    user=me.name,
                    csrf=csrf,
                )
            return render(
                "outcome.html",
                title="Purged",
                text=f"Purged “{message.subject}” from every mailbox.",
                user=me.name,
                csrf=csrf,
            )

        return act(token, csrf, "mail.purge", "You need the Search and Purge role", purged)

    @web.get("/web/quarantine")
    def quarantine(token: Annotated[str | None, Cookie(alias=COOKIE)] = None) -> Response:
        def report(me: Person, csrf: str) -> Response:
            return render(
                "outcome.html",
                title="Quarantine report",
                text=f"{len(MESSAGES)} messages are in quarantine.",
                items=MESSAGES,
                user=me.name,
                csrf=csrf,
            )

        # A GET changes nothing: its CSRF token is the expected one.
        expected = csrf_of(token) if token else ""
        return act(token, expected, "security.read", "You need the Security Reader role", report)

    return web
