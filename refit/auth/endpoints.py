"""/api/auth: wallet sign-in, the signed-in seller, sign-out, email verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from refit import ratelimit, resources
from refit.auth import email_verification, link_page, service, tokens
from refit.auth.deps import CurrentClaims, UserSessionDep
from refit.auth.schemas import (
    ConnectWalletRequest,
    NonceRequest,
    NonceResponse,
    SessionResponse,
    VerifyEmailAccepted,
    VerifyEmailConfirm,
    VerifyEmailRequest,
)
from refit.errors import BadRequest, ProblemError, Unauthorized, problem_responses
from refit.models import User
from refit.settings import Settings
from refit.transactions import SessionDep
from refit.users.schemas import UserRead

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _settings(request: Request) -> Settings:
    settings: Settings = resources.current().settings
    return settings


@router.post("/nonce", response_model=NonceResponse, responses=problem_responses(422, 429))
async def nonce(body: NonceRequest, request: Request, session: SessionDep) -> NonceResponse:
    """Public. A single-use nonce for this wallet and the Sign-In With Solana text to sign."""
    settings = _settings(request)
    ip = ratelimit.client_ip(request)
    # The sign-in limits fail closed: counted in one step before anything is issued, and
    # without Redis nothing is (a 503), rather than nonces and signature checks unbounded.
    await ratelimit.enforce(
        request, settings.rate_limit_nonce_per_ip, "auth.nonce", "ip", ip, fail_closed=True
    )
    service.require_wallet_address(body.wallet_address)
    # Per wallet AND address: counted per wallet alone, a stranger's nine requests would
    # lock the wallet's owner out from everywhere before anyone proved a key.
    await ratelimit.enforce(
        request,
        settings.rate_limit_nonce_per_wallet,
        "auth.nonce",
        "wallet",
        body.wallet_address,
        "ip",
        ip,
        fail_closed=True,
    )
    issued = await service.issue_nonce(session, settings, body.wallet_address)
    return NonceResponse(
        nonce=issued.nonce,
        message=issued.message,
        expires_at=issued.expires_at,
        sign_in_input=issued.sign_in_input,
    )


@router.post(
    "/connect-wallet", response_model=SessionResponse, responses=problem_responses(401, 429)
)
async def connect_wallet(
    body: ConnectWalletRequest, request: Request, session: SessionDep
) -> SessionResponse:
    """Public. Exchange a signed sign-in message for an access token (creates the user on
    first sign-in). Any failed check is a 401 with a specific `code`."""
    settings = _settings(request)
    await ratelimit.enforce(
        request,
        settings.rate_limit_connect_wallet_per_ip,
        "auth.connect_wallet",
        "ip",
        ratelimit.client_ip(request),
        fail_closed=True,
    )
    signed_in = await service.connect_wallet(
        session,
        settings,
        wallet_address=body.wallet_address,
        message=body.message,
        signature=body.signature,
    )
    return SessionResponse(
        access_token=signed_in.token.token,
        expires_in=signed_in.token.expires_in,
        user=UserRead.model_validate(signed_in.user),
    )


@router.get("/me", response_model=UserRead, responses=problem_responses(401))
async def me(session: UserSessionDep, claims: CurrentClaims) -> UserRead:
    """The signed-in seller."""
    user = await session.get(User, claims.user_id)
    if user is None:
        raise Unauthorized("This account no longer exists", code="user_not_found")
    return UserRead.model_validate(user)


@router.post("/sign-out", status_code=204, responses=problem_responses(401))
async def sign_out(request: Request, claims: CurrentClaims, session: SessionDep) -> Response:
    """Revoke the access token this request carries."""
    res = resources.current()
    await tokens.revoke(session, res.redis, res.settings, claims)
    return Response(status_code=204)


async def _verification_mail_limits(request: Request, claims: CurrentClaims) -> None:
    # Wallets cost nothing to make, so the per-seller resend interval alone bounds nothing:
    # mails are also counted per client address and in all, before any connection is taken.
    settings = _settings(request)
    mail = "auth.verification_mail"
    ip = ratelimit.client_ip(request)
    await ratelimit.enforce(request, settings.rate_limit_verification_mail_per_ip, mail, "ip", ip)
    await ratelimit.enforce(request, settings.rate_limit_verification_mail_overall, mail, "all")


@router.post(
    "/verify-email",
    status_code=202,
    response_model=VerifyEmailAccepted,
    responses=problem_responses(401, 409, 429),
    dependencies=[Depends(_verification_mail_limits)],
)
async def verify_email(
    body: VerifyEmailRequest, request: Request, session: UserSessionDep, claims: CurrentClaims
) -> VerifyEmailAccepted:
    """Mail a one-time code and link to this address. 409 when another account verified it,
    429 when a code was sent moments ago."""
    sent = await email_verification.request_verification(
        session, _settings(request), claims.user_id, str(body.email)
    )
    return VerifyEmailAccepted(email=sent.email, expires_at=sent.expires_at)


@router.post(
    "/verify-email/confirm",
    response_model=UserRead,
    responses=problem_responses(400, 401, 409, 410),
)
async def confirm_email(
    body: VerifyEmailConfirm, session: UserSessionDep, claims: CurrentClaims
) -> UserRead:
    """Confirm the signed-in seller's address with the code from the mail."""
    user = await email_verification.confirm(session, body.token, claims.user_id)
    return UserRead.model_validate(user)


# Longer than any code we send (43 characters): anything past this is not one of ours.
_MAX_TOKEN = 128


@router.get(
    "/verify-email/confirm",
    response_model=UserRead,
    responses={
        200: {"content": {"text/html": {}}, "description": "JSON, or a page for a browser"},
        **problem_responses(400, 409, 410),
    },
)
async def confirm_email_link(
    request: Request,
    response: Response,
    session: SessionDep,
    token: Annotated[str, Query(description="The code from the mail's link")] = "",
) -> UserRead | HTMLResponse:
    """Public: the link in the mail (the token is the credential). A browser (Accept ranks
    text/html first) gets a page saying the email is verified, or why the link did not work;
    any other client the same JSON as the POST, and problem+json when refused."""
    wants_html = link_page.prefers_html(request.headers.get("accept"))
    try:
        if not 0 < len(token) <= _MAX_TOKEN:
            raise BadRequest("This verification code is not valid", code="email_token_invalid")
        user = await email_verification.confirm(session, token)
    except ProblemError as exc:
        if not wants_html:
            raise
        return link_page.failure_page(exc.status, exc.code, exc.detail)
    if wants_html:
        return link_page.verified_page(user.email)
    response.headers["Vary"] = "Accept"
    return UserRead.model_validate(user)
