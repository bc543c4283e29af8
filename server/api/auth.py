"""Who is asking: API tokens (``Authorization: Bearer``), browser sessions (cookie + CSRF header).

Every route scopes what it reads and writes through :class:`Principal`: a caller with no role in
an organisation gets 404 for that organisation's things (their existence is not revealed), a
caller with a weaker role than needed gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import quote

import sqlalchemy
from fastapi import Depends, HTTPException, Request
from sqlmodel import Session, col

from server.api.access import KIND_ROUTES, LOGIN_PAGES, OPEN_READS, PUBLIC, route_key
from server.api.deps import ClockDep, ResourcesDep, SessionDep
from server.security import hash_secret, secrets_equal
from server.tables import ROLES, ApiTokenRow, MembershipRow, OrganisationRow, SessionRow, UserRow

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AuthDep",
    "Principal",
    "PrincipalDep",
    "Role",
    "client_key",
    "get_principal",
    "lesser_role",
    "not_found",
]

SESSION_COOKIE = "suitcase_session"
CSRF_HEADER = "X-CSRF-Token"
Role = Literal["viewer", "operator", "admin"]
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Writing last_used_at on every request would serialise reads on SQLite; a minute is precise enough.
_LAST_USED_RESOLUTION_S = 60.0


def _rank(role: str | None) -> int:
    return ROLES.index(role) if role in ROLES else -1


def lesser_role(a: str, b: str) -> str:
    """Return the weaker of two roles."""
    return a if _rank(a) <= _rank(b) else b


def not_found(kind: str, ident: object, hint: str = "") -> HTTPException:
    """Return the 404 for a thing that does not exist or that the caller may not see."""
    return HTTPException(
        status_code=404,
        detail=f"{kind} {ident!r} does not exist or is not in your organisations"
        + (f": {hint}" if hint else ""),
    )


@dataclass(frozen=True)
class Principal:
    """The caller: a user (session or API token), a kiosk or device token, or anonymous."""

    kind: Literal["user", "token", "anonymous"]
    label: str
    user_id: int | None = None
    global_admin: bool = False
    roles: dict[int, str] = field(default_factory=dict)
    slugs: dict[int, str] = field(default_factory=dict)
    token_kind: str | None = None
    token_id: int | None = None
    token_expires_at: float | None = None
    kiosk_deployments: frozenset[int] | None = None
    device_id: str | None = None
    open_reads: bool = False

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"

    def role_in(self, org_id: int) -> str | None:
        """Return the caller's role in ``org_id`` (``admin`` for a global admin), or None."""
        if self.global_admin:
            return "admin"
        return self.roles.get(org_id)

    def can(self, org_id: int, role: str = "viewer") -> bool:
        return _rank(self.role_in(org_id)) >= _rank(role)

    def sees_all(self) -> bool:
        """Global admins, and anonymous readers of a demo server, see every organisation."""
        return self.global_admin or (self.kind == "anonymous" and self.open_reads)

    def org_ids(self, role: str = "viewer") -> set[int] | None:
        """The organisations where the caller has at least ``role``; None means all."""
        if self.global_admin:
            return None
        return {org for org, have in self.roles.items() if _rank(have) >= _rank(role)}

    def require_user(self) -> None:
        """Raise 401 unless the caller is authenticated."""
        if not self.authenticated:
            raise HTTPException(
                status_code=401,
                detail="log in (POST /api/v1/auth/login) or send an API token as "
                "'Authorization: Bearer sct_...' (create one with POST /api/v1/tokens)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def require(self, org_id: int, role: str, kind: str, ident: object) -> None:
        """Raise 404 when the caller has no role in ``org_id``, 403 when the role is too weak."""
        self.require_user()
        have = self.role_in(org_id)
        if have is None or (self.kiosk_deployments is not None and role != "viewer"):
            raise not_found(kind, ident)
        if _rank(have) < _rank(role):
            raise HTTPException(
                status_code=403,
                detail=f"your role in this organisation is {have}; this needs {role}: ask an admin "
                "of the organisation to change your role",
            )

    def require_reader(self, org_id: int, kind: str, ident: object) -> None:
        """Allow a member of ``org_id``, a global admin, or an anonymous reader of a demo server."""
        if self.kind == "anonymous" and self.open_reads:
            return
        self.require(org_id, "viewer", kind, ident)

    def require_global_admin(self) -> None:
        self.require_user()
        if not self.global_admin:
            raise HTTPException(status_code=403, detail="only a global admin may do this")


def client_key(request: Request) -> str:
    """The address of the client, for guess limits."""
    return request.client.host if request.client else "unknown"


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


# Who a caller is, in one statement per request (built once; a request runs it, nothing more):
# every authenticated request paid 4-5 ORM reads here (token or session, user, membership,
# organisation), about half the fixed cost of a small API call. Nothing is cached, so a revoked
# or expired token, a deactivated user or a removed member is refused on the very next request,
# on every replica.
_SESSION_QUERY = (
    sqlalchemy.select(
        col(SessionRow.expires_at),
        col(SessionRow.csrf),
        col(UserRow.id),
        col(UserRow.email),
        col(UserRow.active),
        col(UserRow.is_global_admin),
        col(MembershipRow.org_id),
        col(MembershipRow.role),
        col(OrganisationRow.slug),
    )
    .select_from(SessionRow)
    .outerjoin(UserRow, col(UserRow.id) == col(SessionRow.user_id))
    .outerjoin(MembershipRow, col(MembershipRow.user_id) == col(UserRow.id))
    .outerjoin(OrganisationRow, col(OrganisationRow.id) == col(MembershipRow.org_id))
    .where(col(SessionRow.id_hash) == sqlalchemy.bindparam("id_hash"))
)
_TOKEN_QUERY = (
    sqlalchemy.select(
        col(ApiTokenRow.id),
        col(ApiTokenRow.prefix),
        col(ApiTokenRow.org_id),
        col(ApiTokenRow.role),
        col(ApiTokenRow.kind),
        col(ApiTokenRow.user_id),
        col(ApiTokenRow.device_id),
        col(ApiTokenRow.deployment_ids),
        col(ApiTokenRow.expires_at),
        col(ApiTokenRow.last_used_at),
        col(ApiTokenRow.revoked_at),
        col(UserRow.id),
        col(UserRow.active),
        col(UserRow.is_global_admin),
        col(MembershipRow.role),
        col(OrganisationRow.slug),
    )
    .select_from(ApiTokenRow)
    .outerjoin(UserRow, col(UserRow.id) == col(ApiTokenRow.user_id))
    .outerjoin(
        MembershipRow,
        sqlalchemy.and_(
            col(MembershipRow.user_id) == col(ApiTokenRow.user_id),
            col(MembershipRow.org_id) == col(ApiTokenRow.org_id),
        ),
    )
    .outerjoin(OrganisationRow, col(OrganisationRow.id) == col(ApiTokenRow.org_id))
    .where(col(ApiTokenRow.token_hash) == sqlalchemy.bindparam("token_hash"))
)


def _set_token(session: Session, token_id: int, **values: float) -> None:
    """Write ``values`` (its last use, or its revocation) on token ``token_id`` and commit."""
    session.connection().execute(
        sqlalchemy.update(ApiTokenRow).where(col(ApiTokenRow.id) == token_id).values(**values)
    )
    session.commit()


def _from_token(session: Session, raw: str, now: float) -> Principal:
    found = session.connection().execute(_TOKEN_QUERY, {"token_hash": hash_secret(raw)}).first()
    if found is None or found[10] is not None or (found[8] is not None and found[8] <= now):
        state = "unknown" if found is None else "revoked" if found[10] is not None else "expired"
        raise _unauthorised(f"the API token is {state}: create a new one with POST /api/v1/tokens")
    (
        token_id,
        prefix,
        org_id,
        role,
        kind,
        user_id,
        device_id,
        deployment_ids,
        expires_at,
        last_used_at,
        _,
        user_found,
        active,
        global_admin,
        member_role,
        slug,
    ) = found
    assert token_id is not None
    if user_id is not None:
        # A token never outranks its person: demoted, it is demoted; removed, it is revoked.
        if user_found is None or not active:
            raise _unauthorised("the API token's user is deactivated or deleted")
        current = "admin" if global_admin else member_role
        if current is None:
            _set_token(session, token_id, revoked_at=now)
            raise _unauthorised(
                "the API token is revoked: its user is no longer a member of its organisation"
            )
        role = lesser_role(role, current)
    if last_used_at is None or now - last_used_at > _LAST_USED_RESOLUTION_S:
        _set_token(session, token_id, last_used_at=now)
    return Principal(
        kind="token",
        label=f"token:{prefix}",
        user_id=user_id,
        roles={org_id: role},
        slugs={org_id: slug or ""},
        token_kind=kind,
        token_id=token_id,
        token_expires_at=expires_at,
        kiosk_deployments=frozenset(deployment_ids or ()) if kind == "kiosk" else None,
        device_id=device_id,
    )


def _from_session(session: Session, request: Request, raw: str, now: float) -> Principal | None:
    rows = session.connection().execute(_SESSION_QUERY, {"id_hash": hash_secret(raw)}).all()
    if not rows or rows[0][0] <= now:
        return None
    _, csrf, user_id, email, active, global_admin, _, _, _ = rows[0]
    if request.method in _UNSAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not secrets_equal(sent, csrf):
            raise HTTPException(
                status_code=403,
                detail=f"missing or wrong {CSRF_HEADER} header: send the csrf value from "
                "POST /api/v1/auth/login or GET /api/v1/auth/me with every change",
            )
    if user_id is None or not active:
        return None
    # One row per membership (a row of None when there is none); a membership of an organisation
    # that is gone is no role.
    members = [(org, role, slug) for *_, org, role, slug in rows if org is not None and slug is not None]
    return Principal(
        kind="user",
        label=email,
        user_id=user_id,
        global_admin=bool(global_admin),
        roles={org: role for org, role, _ in members},
        slugs={org: slug for org, _, slug in members},
    )


def get_principal(
    request: Request, session: SessionDep, resources: ResourcesDep, clock: ClockDep
) -> Principal:
    """Resolve the caller from the bearer token or the session cookie, and check that its kind may
    use this route (:mod:`server.api.access`: deny by default).

    Raises:
        HTTPException: 401 for a bad token or an anonymous caller of a closed route (a page: 303
            to the login), 403 for a token whose kind may not use the route or a cookie request
            without its CSRF header.
    """
    now = clock()
    header = request.headers.get("Authorization", "")
    principal: Principal | None = None
    if header:
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise _unauthorised("the Authorization header must be 'Bearer <token>'")
        principal = _from_token(session, raw.strip(), now)
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            principal = _from_session(session, request, cookie, now)
    anonymous = Principal(kind="anonymous", label="anonymous", open_reads=resources.settings.reads_open)
    admitted = _admit(request, principal or anonymous, anonymous)
    request.state.principal = admitted  # error handlers tell staff more than the public
    return admitted


def _admit(request: Request, principal: Principal, anonymous: Principal) -> Principal:
    key = route_key(request)
    if principal.kind == "anonymous":
        if key in PUBLIC or (principal.open_reads and key in OPEN_READS):
            return principal
        if key in LOGIN_PAGES:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(
                status_code=303,
                detail="log in to see this page",
                headers={"Location": f"/login?next={quote(target, safe='')}"},
            )
        principal.require_user()
        return principal
    allowed = KIND_ROUTES.get(principal.token_kind or "")
    if allowed is None or key in allowed:
        if principal.token_kind == "device" and request.path_params.get("device", principal.device_id) != (
            principal.device_id
        ):
            raise not_found("device", request.path_params["device"], "a device token reads its own device")
        return principal
    if key in PUBLIC:
        return anonymous  # what is public, a kiosk or a device sees as everyone does
    raise HTTPException(
        status_code=403,
        detail=f"a {principal.token_kind} token may not use {request.method} "
        f"{key[1] if key else request.url.path}: use a person's API token (POST /api/v1/tokens) or log in",
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_authenticated(principal: PrincipalDep) -> Principal:
    """Like :func:`get_principal`, but 401 for anonymous callers."""
    principal.require_user()
    return principal


AuthDep = Annotated[Principal, Depends(get_authenticated)]
