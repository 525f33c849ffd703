"""A real SCIM 2.0 service provider for tests and benchmarks: scim2-server, on loopback.

``ScimServer`` serves scim2-server's WSGI application over its in-memory storage, behind a
static bearer token, on a free loopback port in a thread. The storage outlives the HTTP
server, so ``stop()`` is an outage (connections refused) and ``start()`` brings the same users
and groups back, on the same port.

Seeding and "by hand" changes (an administrator of the downstream system adding or removing a
member behind Pimlico's back) go through the server's own SCIM API with a client of this module,
never through the connector under test::

    with ScimServer() as scim:
        alex = scim.create_user("alex", email="alex@example.org")
        group = scim.create_group("mail-purge")
        connector = build(scim.config(), scim.token)
        scim.add_member_by_hand(group, alex)
        assert scim.members(group) == {alex}
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx
from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

from tests.connectors.loopback import LoopbackServer

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
BULK_LIMIT = 1000
"""Operations per bulk request (the default service provider configuration's maxOperations)."""


def _provider() -> ScimProvider:
    config = load_default_service_provider_config()
    config.authentication_schemes = [BEARER_TOKEN_SCHEME]
    return ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )


@dataclass(frozen=True)
class Seen:
    """A request the server received: its method, path (under ``/v2``) and query string."""

    method: str
    path: str
    query: str


class ScimServer:
    """A running SCIM server on loopback, and an admin client to seed and inspect it.

    ``requests`` lists every request the server received (the admin client's too; clear it
    before the calls a test counts). ``forced_status``, when set, makes the server answer every
    request with that status and a SCIM error, as a failing proxy or an overloaded service would.
    """

    def __init__(self, *, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(16)
        self.storage = InMemoryStorage()
        self.requests: list[Seen] = []
        self.forced_status: int | None = None
        self._scim = BearerTokenApplication(self.storage, _provider(), bearer_tokens=[self.token])
        self._http = LoopbackServer(self._serve)
        self._admin: httpx.Client | None = None

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "")).removeprefix("/v2")
        self.requests.append(Seen(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", "")))
        status = self.forced_status
        if status is None:
            return self._scim(environ, start_response)
        error = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": "forced by the test"}
        start_response(
            f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/scim+json")]
        )
        return [json.dumps(error).encode()]

    @property
    def base_url(self) -> str:
        """The SCIM root (``http://127.0.0.1:<port>/v2``)."""
        return f"{self._http.url}/v2"

    @property
    def running(self) -> bool:
        return self._http.running

    def config(
        self, *, match: str = "user_name", timeout_seconds: float = 5.0
    ) -> dict[str, object]:
        """A SCIM connector configuration pointing here (pass ``self.token`` as its secret)."""
        return {"base_url": self.base_url, "match": match, "timeout_seconds": timeout_seconds}

    def start(self) -> None:
        self._http.start()

    def stop(self) -> None:
        """An outage: connections are refused until ``start``; the data is kept."""
        self._http.stop()

    def restart(self) -> None:
        self._http.restart()

    def close(self) -> None:
        self.stop()
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- seeding ---------------------------------------------------------------------------

    def create_user(self, user_name: str, *, email: str | None = None) -> str:
        """A new user; its SCIM id."""
        created = self._request("POST", "/Users", json=_user(user_name, email))
        return str(created["id"])

    def create_users(self, users: Iterable[tuple[str, str | None]]) -> dict[str, str]:
        """Many new users (``(user_name, email)`` pairs), by bulk requests; ids by user name."""
        pending = list(users)
        ids: dict[str, str] = {}
        for start in range(0, len(pending), BULK_LIMIT):
            chunk = pending[start : start + BULK_LIMIT]
            operations = [
                {"method": "POST", "path": "/Users", "bulkId": f"u{i}", "data": _user(name, email)}
                for i, (name, email) in enumerate(chunk)
            ]
            answer = self._request(
                "POST", "/Bulk", json={"schemas": [BULK_SCHEMA], "Operations": operations}
            )
            for (name, _), result in zip(chunk, answer["Operations"], strict=True):
                if not str(result.get("status", "")).startswith("2"):
                    raise AssertionError(f"creating SCIM user {name!r} failed: {result}")
                ids[name] = str(result["location"]).rsplit("/", 1)[1]
        return ids

    def create_group(self, display_name: str, *, members: Iterable[str] = ()) -> str:
        """A new group (with these user ids as members); its SCIM id."""
        body: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "displayName": display_name}
        values = [{"value": user_id} for user_id in members]
        if values:
            body["members"] = values
        created = self._request("POST", "/Groups", json=body)
        return str(created["id"])

    # -- inspecting and drifting -----------------------------------------------------------

    def members(self, group_id: str) -> frozenset[str]:
        """The user ids that are members of the group, as the server holds them."""
        group = self._request("GET", f"/Groups/{group_id}", params={"attributes": "members"})
        return frozenset(str(member["value"]) for member in group.get("members") or [])

    def add_member_by_hand(self, group_id: str, user_id: str) -> None:
        """Drift: a downstream administrator adds a member Pimlico did not grant."""
        operation = {"op": "add", "path": "members", "value": [{"value": user_id}]}
        self._patch(group_id, operation)

    def remove_member_by_hand(self, group_id: str, user_id: str) -> None:
        """Drift: a downstream administrator removes a member Pimlico granted."""
        operation = {"op": "remove", "path": f'members[value eq "{user_id}"]'}
        self._patch(group_id, operation)

    def _patch(self, group_id: str, operation: Mapping[str, Any]) -> None:
        body = {"schemas": [PATCH_OP_SCHEMA], "Operations": [operation]}
        self._request("PATCH", f"/Groups/{group_id}", json=body)

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if self._admin is None:
            self._admin = httpx.Client(
                headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0
            )
        response = self._admin.request(method, self.base_url + path, **kwargs)
        if response.is_error:
            raise AssertionError(f"SCIM {method} {path}: {response.status_code} {response.text}")
        if response.status_code == 204:
            return {}
        body: dict[str, Any] = response.json()
        return body


def _user(user_name: str, email: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": user_name}
    if email is not None:
        user["emails"] = [{"value": email, "primary": True}]
    return user
