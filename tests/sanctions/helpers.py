"""The SDN list fixture (OFAC's XML shape, invented entries) and lists made from it."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

from refit.sanctions import sdn_file

SAMPLE = Path(__file__).with_name("sdn_sample.xml")
SAMPLE_PUBLISHED = dt.date(2026, 12, 1)
# In the sample: under `Digital Currency Address - SOL` (entry 40001, then again under 40002),
# and a Solana address filed under USDC (entry 40002).
LISTED = "8YRuhMyVGXF6vgUWDAyojQR8Rp6NzkshZtpce8FgtFnV"
LISTED_UNDER_USDC = "GHRFshWEAfTN6JeDKdzdceMHoWY4qBUkiUimJ9HJ3HwY"
# In the sample as a passport-like ID, not a digital-currency address: not screened.
ID_NOT_AN_ADDRESS = "9VY9YpAayEGXmRmdAPUQH4pKAcPa59LyWVZuUQsEfCy2"
NOT_LISTED = "Bnqf9jLx19JEmfZjmBKfkw5LXUCfaVZJ5q1vg2aatV9L"


def sample_xml(
    published: dt.date = SAMPLE_PUBLISHED, replace: dict[str, str] | None = None
) -> bytes:
    """The sample, published on `published`, each address in `replace` by its value."""
    text = SAMPLE.read_text().replace(
        "<Publish_Date>12/01/2026</Publish_Date>",
        f"<Publish_Date>{published:%m/%d/%Y}</Publish_Date>",
    )
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return text.encode()


def days_ago(days: int) -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)


def sample_list(
    published: dt.date = SAMPLE_PUBLISHED, replace: dict[str, str] | None = None
) -> sdn_file.SdnList:
    return sdn_file.parse(io.BytesIO(sample_xml(published, replace)))
