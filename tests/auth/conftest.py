from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from refit.settings import Settings
from tests.notifications.smtp_server import SmtpRecorder, smtp_server


@pytest.fixture
async def smtp(settings: Settings) -> AsyncIterator[SmtpRecorder]:
    """A real SMTP server for this test, with REFIT_SMTP_URL pointing at it (with login)."""
    async with smtp_server(username="refit", password="s3cret/pass") as server:
        settings.smtp_url = server.url
        yield server
