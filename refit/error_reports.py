"""Sentry, for the API and the worker alike, when REFIT_SENTRY_DSN is set (nothing imported
otherwise: the SDK costs a noticeable part of a second at start-up)."""

from __future__ import annotations

from refit.settings import Settings


def init_sentry(settings: Settings) -> None:
    if not settings.sentry_dsn:
        return
    import sentry_sdk

    from refit.logs import scrub_sentry_event

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.env,
        send_default_pii=False,
        # No personal data: locals and bodies hold emails and addresses.
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_sentry_event,  # type: ignore[arg-type]
    )
