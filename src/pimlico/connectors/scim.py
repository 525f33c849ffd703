"""The SCIM 2.0 connector: members of a SCIM group, kept with ``PATCH /Groups/{id}`` (RFC 7644).

It owns the SCIM side of the connector contract: finding users by ``userName`` or by e-mail
with filtered searches, adding and removing a group's members with one PatchOp per call, and
reading a group's members. Objects are SCIM group ids; identities are SCIM user ids.

What it sends, and why:
- ``resolve``: ``GET /Users?filter=userName eq "a" or userName eq "b" …`` for up to
  ``FILTER_BATCH`` members at a time. Values are JSON string literals, the quoting RFC 7644
  §3.4.2.2 prescribes, so a quote or a backslash in a name cannot change the filter. SCIM
  compares ``userName`` and e-mail addresses case-insensitively, and so does the matching of
  the answers. A member whose value matches several users gets ``None``: granting the wrong
  account is worse than reporting the principal as not provisioned.
- ``grant``: one ``add`` of every identity to ``members``; RFC 7644 §3.5.2.1 makes adding an
  existing member a no-op.
- ``revoke``: one ``remove`` whose path selects every identity at once,
  ``members[value eq "a" or value eq "b" …]``; a filter that matches nothing succeeds
  (§3.5.2.2), so removing a non-member changes nothing. (Entra's ``remove`` with a ``value``
  list is not RFC 7644 and scim2-server refuses it.)
- PATCH asks for ``attributes=id`` so that a group of thousands does not come back in full.

It must not know about assignments or the store, keep state between calls beyond its HTTP
client, or raise anything but ``ConnectorError`` from an operation (``build`` raises
``ValueError``, pydantic's ``ValidationError`` included, for a bad configuration).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pimlico.connectors.base import ConnectorError, Member
from pimlico.connectors.http_common import check_http_url, send

PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MEDIA_TYPE = "application/scim+json"
FILTER_BATCH = 50
"""Members looked up per search: keeps the query string well under common URL limits."""
PAGE_SIZE = 200
"""Results asked for per page of a search (servers may answer fewer; the client pages on)."""


class ScimConfig(BaseModel):
    """How to reach a SCIM 2.0 service provider. The bearer token is the secret, kept apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    """The SCIM root, the URL ``/Users`` and ``/Groups`` are under (``https://idp/scim/v2``)."""
    match: Literal["user_name", "email"] = "user_name"
    """Which Pimlico field finds a user: ``user_name`` → ``userName``, ``email`` →
    ``emails.value``."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    verify_tls: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value).rstrip("/")


def build(config: Mapping[str, object], secret: str | None) -> ScimConnector:
    """A SCIM connector from its stored configuration and its bearer token (if any)."""
    return ScimConnector(ScimConfig.model_validate(dict(config)), token=secret)


def filter_value(value: str) -> str:
    """``value`` as a SCIM filter string literal: JSON-quoted and escaped (RFC 7644 §3.4.2.2)."""
    return json.dumps(value, ensure_ascii=False)


class ScimConnector:
    """Members of SCIM groups on one service provider, over one HTTP client."""

    kind = "scim"

    def __init__(self, config: ScimConfig, *, token: str | None) -> None:
        headers = {"Accept": f"{MEDIA_TYPE}, application/json", "User-Agent": "pimlico"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.config = config
        self._client = httpx.Client(
            base_url=config.base_url + "/",
            headers=headers,
            timeout=config.timeout_seconds,
            verify=config.verify_tls,
            follow_redirects=False,
        )

    def resolve(self, members: Collection[Member]) -> dict[str, str | None]:
        result: dict[str, str | None] = {member.principal_id: None for member in members}
        by_key: dict[str, list[Member]] = {}
        spelling: dict[str, str] = {}
        for member in members:
            value = member.user_name if self.config.match == "user_name" else member.email
            if value:
                key = value.casefold()
                by_key.setdefault(key, []).append(member)
                spelling.setdefault(key, value)
        keys = list(by_key)
        for start in range(0, len(keys), FILTER_BATCH):
            batch = keys[start : start + FILTER_BATCH]
            found = self._find_users([spelling[key] for key in batch])
            for key in batch:
                ids = found.get(key, set())
                if len(ids) == 1:
                    (user_id,) = ids
                    for member in by_key[key]:
                        result[member.principal_id] = user_id
        return result

    def grant(self, obj: str, identities: Collection[str]) -> None:
        values = sorted(set(identities))
        if not values:
            return
        operation = {"op": "add", "path": "members", "value": [{"value": v} for v in values]}
        self._patch(obj, operation, what=f"SCIM grant of {len(values)} member(s) to group {obj!r}")

    def revoke(self, obj: str, identities: Collection[str]) -> None:
        values = sorted(set(identities))
        if not values:
            return
        selection = " or ".join(f"value eq {filter_value(v)}" for v in values)
        operation = {"op": "remove", "path": f"members[{selection}]"}
        what = f"SCIM revocation of {len(values)} member(s) from group {obj!r}"
        self._patch(obj, operation, what=what)

    def list_current(self, obj: str) -> frozenset[str]:
        what = f"SCIM read of the members of group {obj!r}"
        response = send(
            self._client, "GET", self._group_path(obj), what=what, params={"attributes": "members"}
        )
        body = _json_object(response, what=what)
        members = body.get("members") or []
        if not isinstance(members, list):
            raise ConnectorError(f"{what}: 'members' is not a list", retryable=False)
        return frozenset(
            str(entry["value"]) for entry in members if isinstance(entry, dict) and "value" in entry
        )

    def close(self) -> None:
        self._client.close()

    def _patch(self, obj: str, operation: dict[str, Any], *, what: str) -> None:
        body = json.dumps({"schemas": [PATCH_OP_SCHEMA], "Operations": [operation]})
        send(
            self._client,
            "PATCH",
            self._group_path(obj),
            what=what,
            params={"attributes": "id"},
            content=body.encode(),
            headers={"Content-Type": MEDIA_TYPE},
        )

    def _group_path(self, obj: str) -> str:
        # Quoted whole, so an id cannot reach another path; "." and ".." would still be
        # dot-segments once quoted, which URL joining removes.
        if obj in ("", ".", ".."):
            raise ConnectorError(f"{obj!r} is not a SCIM group id", retryable=False)
        return "Groups/" + quote(obj, safe="")

    def _find_users(self, values: Sequence[str]) -> dict[str, set[str]]:
        """The ids of the users each value (casefolded) matches, from one filtered search."""
        attribute = "userName" if self.config.match == "user_name" else "emails.value"
        query = " or ".join(f"{attribute} eq {filter_value(value)}" for value in values)
        wanted = {value.casefold() for value in values}
        found: dict[str, set[str]] = {}
        what = f"SCIM search of {len(values)} user(s) by {attribute}"
        for user in self._search_users(query, what=what):
            user_id = user.get("id")
            if not isinstance(user_id, str):
                continue
            for key in _user_keys(user, self.config.match) & wanted:
                found.setdefault(key, set()).add(user_id)
        return found

    def _search_users(self, query: str, *, what: str) -> Iterator[dict[str, Any]]:
        start_index = 1
        while True:
            params = {
                "filter": query,
                "attributes": "id,userName,emails",
                "startIndex": str(start_index),
                "count": str(PAGE_SIZE),
            }
            response = send(self._client, "GET", "Users", what=what, params=params)
            page = _json_object(response, what=what)
            resources = page.get("Resources") or []
            if not isinstance(resources, list):
                raise ConnectorError(f"{what}: 'Resources' is not a list", retryable=False)
            yield from (resource for resource in resources if isinstance(resource, dict))
            total = page.get("totalResults")
            start_index += len(resources)
            if not resources or not isinstance(total, int) or start_index > total:
                return


def _user_keys(user: Mapping[str, Any], match: str) -> set[str]:
    """The casefolded values of a SCIM user that the configured match compares."""
    if match == "user_name":
        name = user.get("userName")
        return {name.casefold()} if isinstance(name, str) else set()
    emails = user.get("emails") or []
    if not isinstance(emails, list):
        return set()
    return {
        entry["value"].casefold()
        for entry in emails
        if isinstance(entry, dict) and isinstance(entry.get("value"), str)
    }


def _json_object(response: httpx.Response, *, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise ConnectorError(f"{what}: the answer is not JSON", retryable=False) from exc
    if not isinstance(body, dict):
        raise ConnectorError(f"{what}: the answer is not a JSON object", retryable=False)
    return body
