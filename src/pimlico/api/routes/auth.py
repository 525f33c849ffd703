"""Sign-in, sign-out, who am I, passwords and tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, Field

from pimlico.api.deps import (
    CallerDep,
    Page,
    PagingDep,
    RuntimeDep,
    SelfDep,
    after_cursor,
    newest_first,
    written,
)
from pimlico.domain.model import PrincipalType
from pimlico.services import accounts

router = APIRouter(tags=["authentication"])


class SignIn(BaseModel):
    user_name: str = Field(max_length=256, examples=["alex"])
    password: str = Field(max_length=accounts.PASSWORD_MAX, examples=["correct horse battery"])
    code: str | None = Field(
        default=None,
        max_length=64,
        description="The code of the account's authenticator app (or a recovery code): "
        "needed when the account has MFA, else refused with `MfaCodeRequired` (401).",
        examples=["492039"],
    )


class TokenOut(BaseModel):
    """A token as its holder sees it: never its secret."""

    id: str
    kind: str = Field(examples=["personal"])
    principal_type: PrincipalType
    principal_id: str
    name: str = Field(examples=["nightly report"])
    scopes: list[str] = Field(examples=[["pim.decisions.read"]])
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: accounts.Token) -> TokenOut:
        return cls(
            id=token.id,
            kind=token.kind,
            principal_type=token.principal_type,
            principal_id=token.principal_id,
            name=token.name,
            scopes=list(token.scopes),
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


class IssuedTokenOut(BaseModel):
    """A new token. ``token`` is shown this once: store it now."""

    token: str = Field(examples=["pim_0193…_Xk3…"])
    details: TokenOut


class NewToken(BaseModel):
    name: str = Field(max_length=256, examples=["nightly report"])
    scopes: list[str] = Field(
        default_factory=lambda: [accounts.ALL_SCOPES],
        max_length=64,
        description="pim.* permission patterns the token may use, `pim.self` to act for "
        "oneself, or `*` for all its holder's.",
        examples=[["pim.decisions.read"]],
    )
    lifetime: timedelta | None = Field(
        default=None, description="ISO 8601 duration (default P90D).", examples=["P30D"]
    )
    service_account_id: str | None = Field(
        default=None, description="Make it for this service account (needs pim.users.write)."
    )


class Me(BaseModel):
    principal_id: str
    name: str = Field(description="A user's user name, a service account's name.")
    scopes: list[str] | None = Field(description="The token's scopes; null: unrestricted.")


class PasswordChange(BaseModel):
    password: str = Field(max_length=accounts.PASSWORD_MAX)
    current_password: str | None = Field(default=None, max_length=accounts.PASSWORD_MAX)


def _issued(issued: accounts.IssuedToken) -> IssuedTokenOut:
    return IssuedTokenOut(token=issued.bearer, details=TokenOut.of(issued.token))


@router.post(
    "/auth/sign-in",
    response_model=IssuedTokenOut,
    status_code=status.HTTP_201_CREATED,
    summary="Sign in with a local password; returns a session token",
)
def sign_in(body: SignIn, rt: RuntimeDep, response: Response) -> IssuedTokenOut:
    issued = accounts.sign_in(rt, user_name=body.user_name, password=body.password, code=body.code)
    written(response, issued.revision)
    return _issued(issued)


@router.post(
    "/auth/sign-out",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End the token this request carries",
)
def sign_out(request: Request, caller: CallerDep, rt: RuntimeDep, response: Response) -> None:
    done = accounts.revoke_token(rt, actor=caller, token_id=request.state.token_id)
    written(response, done.revision)


@router.get("/me", response_model=Me, summary="Who the caller is")
def me(caller: CallerDep, rt: RuntimeDep) -> Me:
    assert caller.principal_id is not None
    scopes = None if caller.scopes is None else sorted(caller.scopes)
    name = accounts.name_of(rt, caller)
    return Me(principal_id=caller.principal_id, name=name, scopes=scopes)


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change one's own password (ends one's sign-in sessions)",
)
def change_password(
    body: PasswordChange, caller: SelfDep, rt: RuntimeDep, response: Response
) -> None:
    assert caller.principal_id is not None
    done = accounts.set_password(
        rt,
        actor=caller,
        user_id=caller.principal_id,
        password=body.password,
        current_password=body.current_password,
    )
    written(response, done.revision)


@router.get(
    "/tokens",
    response_model=Page[TokenOut],
    summary="Tokens of oneself or another (pim.users.read), newest first",
)
def list_tokens(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    principal_id: Annotated[
        str | None, Query(max_length=64, description="Whose tokens; default: the caller's.")
    ] = None,
    kind: Annotated[
        Literal["session", "personal", "service"] | None,
        Query(description="Only sign-in sessions, personal or service-account tokens."),
    ] = None,
    usable: Annotated[bool, Query(description="Only tokens neither revoked nor expired.")] = False,
) -> Page[TokenOut]:
    found = accounts.list_tokens(
        rt,
        actor=caller,
        principal_id=principal_id,
        kind=kind,
        usable=usable,
        after=after_cursor(paging),
        limit=paging.limit + 1,
    )
    return paging.page(found, lambda t: newest_first(t.created_at, t.id), TokenOut.of)


@router.post(
    "/tokens",
    response_model=IssuedTokenOut,
    status_code=status.HTTP_201_CREATED,
    summary="Make a personal or service-account token (shown once)",
)
def issue_token(
    body: NewToken, caller: CallerDep, rt: RuntimeDep, response: Response
) -> IssuedTokenOut:
    issued = accounts.issue_token(
        rt,
        actor=caller,
        name=body.name,
        scopes=body.scopes,
        lifetime=body.lifetime,
        service_account_id=body.service_account_id,
    )
    written(response, issued.revision)
    return _issued(issued)


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke a token")
def revoke_token(
    token_id: Annotated[str, "token id"], caller: CallerDep, rt: RuntimeDep, response: Response
) -> TokenOut:
    done = accounts.revoke_token(rt, actor=caller, token_id=token_id)
    written(response, done.revision)
    return TokenOut.of(done.value)
