"""Connectors, their mappings, provisioning states and reconciliation.

Routes translate and call ``services.connectors``, ``services.connector_mappings``,
``services.provisioning`` and ``jobs.reconcile``; the services decide who may do what
(``pim.connectors.read`` / ``.write``). A connector's secret is accepted on writes and never
returned: answers say only whether one is set. Connectors are disabled, never deleted, and a
mapping is ended, never deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pimlico.api.deps import CallerDep, Page, PagingDep, RuntimeDep, written
from pimlico.api.routes.directory import Id, Input
from pimlico.api.routes.request_models import TargetIn, TargetOut
from pimlico.jobs import reconcile as reconciling
from pimlico.services import connector_mappings, connectors, provisioning

router = APIRouter(tags=["connectors"])

Kind = Literal["ldap", "postgres", "scim", "webhook"]
Mode = Literal["authoritative", "report_only"]
Status = Literal["pending", "provisioned", "failed", "revoked"]
Name = Annotated[
    str, Path(pattern=r"^[^\x00/]{1,200}$", description="The connector's unique name.")
]
ConnectorQuery = Annotated[
    str | None, Query(max_length=200, description="Only this connector (by name).")
]
CONFIG_EXAMPLE = {
    "url": "ldap://ldap.example.org",
    "bind_dn": "cn=pimlico,dc=example,dc=org",
    "user_base": "ou=people,dc=example,dc=org",
}


class ConnectorOut(BaseModel):
    """A downstream system Pimlico provisions into. Its secret is never shown."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str = Field(examples=["corp-ldap"])
    kind: Kind
    config: dict[str, Any] = Field(examples=[CONFIG_EXAMPLE])
    mode: Mode = Field(
        description="authoritative: reconcile adds and removes; report_only: it only reports."
    )
    enabled: bool
    has_secret: bool
    created_at: datetime
    updated_at: datetime


class NewConnector(Input):
    name: str = Field(min_length=1, max_length=200, examples=["corp-ldap"])
    kind: Kind
    config: dict[str, Any] = Field(
        description="The kind's settings (see the connectors' documentation); no secrets.",
        examples=[CONFIG_EXAMPLE],
    )
    secret: str | None = Field(
        default=None,
        max_length=4000,
        description="Password, bearer token or signing key: stored encrypted, never shown.",
    )
    mode: Mode = "authoritative"
    enabled: bool = True


class ConnectorChange(Input):
    config: dict[str, Any] | None = Field(default=None, description="Replaces the whole one.")
    secret: str | None = Field(default=None, max_length=4000, description="Replaces it.")
    mode: Mode | None = None
    enabled: bool | None = None
    reason: str | None = Field(default=None, max_length=4000)


class MappingOut(BaseModel):
    """A Pimlico target that drives a downstream object of a connector."""

    id: str
    connector: str
    target: TargetOut
    downstream_object: str = Field(examples=["cn=mail-purge,ou=groups,dc=example,dc=org"])
    created_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, m: connector_mappings.MappingInfo) -> MappingOut:
        return cls(
            id=m.id,
            connector=m.connector,
            target=TargetOut(
                type=m.target.type, object_id=m.target.object_id, scope=m.target.scope
            ),
            downstream_object=m.downstream_object,
            created_at=m.created_at,
            ended_at=m.ended_at,
        )


class NewMapping(Input):
    connector: str = Field(min_length=1, max_length=200, examples=["corp-ldap"])
    target: TargetIn
    downstream_object: str = Field(
        min_length=1, max_length=1024, examples=["cn=mail-purge,ou=groups,dc=example,dc=org"]
    )


class ProvisioningOut(BaseModel):
    """How far one principal's access got in one connector's object."""

    model_config = ConfigDict(from_attributes=True)

    connector: str
    mapping_id: str
    downstream_object: str
    principal_id: str
    present: bool = Field(description="Whether the principal should be a member downstream.")
    status: Status
    attempts: int
    identity: str | None = Field(description="The principal's name downstream, once resolved.")
    last_error: str | None
    updated_at: datetime


class CorrectionOut(BaseModel):
    """A difference reconciliation found (and, if ``applied``, corrected)."""

    model_config = ConfigDict(from_attributes=True)

    connector: str
    mapping_id: str
    downstream_object: str
    action: Literal["grant", "revoke", "unlisted", "error"]
    identity: str | None
    principal_id: str | None
    applied: bool
    detail: str | None


class Reconciled(BaseModel):
    dry_run: bool
    corrections: list[CorrectionOut]


@router.get("/connectors", response_model=Page[ConnectorOut], summary="Connectors, by name")
def list_connectors(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    kind: Annotated[Kind | None, Query(description="Only this kind.")] = None,
    enabled: Annotated[bool | None, Query(description="Only enabled or disabled.")] = None,
) -> Page[ConnectorOut]:
    found = [
        c
        for c in connectors.list_connectors(rt, actor=caller)
        if kind in (None, c.kind) and enabled in (None, c.enabled)
    ]
    return paging.page(found, lambda c: (c.name.lower(), c.id), ConnectorOut.model_validate)


@router.post(
    "/connectors",
    response_model=ConnectorOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a connector (its configuration is checked; its secret stored encrypted)",
)
def add_connector(
    body: NewConnector, caller: CallerDep, rt: RuntimeDep, response: Response
) -> ConnectorOut:
    done = connectors.add_connector(rt, actor=caller, **body.model_dump())
    written(response, done.revision)
    return ConnectorOut.model_validate(done.value)


@router.patch(
    "/connectors/{name}",
    response_model=ConnectorOut,
    summary="Change a connector's configuration, secret, mode, or disable / enable it",
)
def change_connector(
    name: Name, body: ConnectorChange, caller: CallerDep, rt: RuntimeDep, response: Response
) -> ConnectorOut:
    done = connectors.update_connector(rt, actor=caller, name=name, **body.model_dump())
    written(response, done.revision)
    return ConnectorOut.model_validate(done.value)


@router.get(
    "/connector-mappings",
    response_model=Page[MappingOut],
    summary="Which Pimlico targets drive which downstream objects",
)
def list_mappings(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    connector: ConnectorQuery = None,
    include_ended: Annotated[bool, Query(description="Also mappings that ended.")] = False,
) -> Page[MappingOut]:
    found = connector_mappings.list_mappings(
        rt, actor=caller, connector=connector, include_ended=include_ended
    )
    return paging.page(found, lambda m: (m.created_at.isoformat(), m.id), MappingOut.of)


@router.post(
    "/connector-mappings",
    response_model=MappingOut,
    status_code=status.HTTP_201_CREATED,
    summary="Make a target drive a downstream object (whoever holds it is provisioned there)",
)
def add_mapping(
    body: NewMapping, caller: CallerDep, rt: RuntimeDep, response: Response
) -> MappingOut:
    done = connector_mappings.add_mapping(
        rt,
        actor=caller,
        connector=body.connector,
        target=body.target.to_domain(),
        downstream_object=body.downstream_object,
    )
    written(response, done.revision)
    return MappingOut.of(done.value)


@router.delete(
    "/connector-mappings/{mapping_id}",
    response_model=MappingOut,
    summary="End a mapping (its object is no longer managed; its members stay as they are)",
)
def end_mapping(
    mapping_id: Id,
    caller: CallerDep,
    rt: RuntimeDep,
    response: Response,
    reason: Annotated[str | None, Query(max_length=4000)] = None,
) -> MappingOut:
    done = connector_mappings.end_mapping(rt, actor=caller, mapping_id=mapping_id, reason=reason)
    written(response, done.revision)
    return MappingOut.of(done.value)


@router.get(
    "/provisioning",
    response_model=Page[ProvisioningOut],
    summary="Provisioning states: who is (to be) a member of which downstream object",
)
def list_provisioning(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    connector: ConnectorQuery = None,
    status: Annotated[Status | None, Query(description="Only this state.")] = None,
) -> Page[ProvisioningOut]:
    found = provisioning.states(rt, actor=caller, connector=connector, status=status)
    order = {"failed": 0, "pending": 1}
    return paging.page(
        found,
        lambda s: (str(order.get(s.status, 2)), s.connector, s.principal_id, s.mapping_id),
        ProvisioningOut.model_validate,
    )


@router.get(
    "/assignments/{assignment_id}/provisioning",
    response_model=list[ProvisioningOut],
    summary="Where an assignment is provisioned: its state in each connector mapping its target",
)
def assignment_provisioning(
    assignment_id: Id, caller: CallerDep, rt: RuntimeDep
) -> list[ProvisioningOut]:
    found = provisioning.states_of_assignment(rt, actor=caller, assignment_id=assignment_id)
    return [ProvisioningOut.model_validate(s) for s in found]


@router.post(
    "/reconcile",
    response_model=Reconciled,
    summary="Make every managed downstream object match what is in force (or, dry run, say how)",
)
def reconcile(
    caller: CallerDep,
    rt: RuntimeDep,
    response: Response,
    dry_run: Annotated[bool, Query(description="Report only; change nothing.")] = False,
    connector: ConnectorQuery = None,
) -> Reconciled:
    found = reconciling.reconcile(rt, actor=caller, dry_run=dry_run, connector=connector)
    if not dry_run:
        # (reconcile returns no revision of its own: the store's now is at or past its write)
        written(response, rt.decisions.current().revision)
    return Reconciled(dry_run=dry_run, corrections=[CorrectionOut.model_validate(c) for c in found])
