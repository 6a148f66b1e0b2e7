"""The sweeps' count of re-queues per row (migration 0020; refit/sweeps.py writes it). Service
role only."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base
from refit.models.base import Timestamps


class SweepAttempt(Timestamps, Base):
    """How often a sweep gave a row its job again, and when it stopped (flagged the row for an
    operator instead). One row per job and swept row: an order's label and its return label
    are counted apart."""

    __tablename__ = "sweep_attempts"

    # The job the sweep re-queues: it names the kind of row (an order's label, a payout...).
    task: Mapped[str] = mapped_column(Text, primary_key=True)
    # The swept row's id, as the job is given it (an order's id, a webhook's inbox id).
    row_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    gave_up_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
