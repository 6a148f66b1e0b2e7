"""OFAC's sanctions list as screening reads it (migration 0019): the Solana addresses it names
and the one row describing the list loaded. Written only by `refit sanctions load`, which
replaces both in one transaction. Service role only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, DateTime, Integer, SmallInteger, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from refit.db import Base


class SanctionedAddress(Base):
    __tablename__ = "sanctioned_addresses"

    # Compared exactly: a Solana address has one written form (refit.sanctions.sdn_file).
    address: Mapped[str] = mapped_column(Text, primary_key=True)
    # The list's entry naming it (`sdnEntry/uid`), its name, and the ID's type as filed
    # (`Digital Currency Address - SOL`).
    sdn_uid: Mapped[int] = mapped_column(Integer, nullable=False)
    sdn_name: Mapped[str] = mapped_column(Text, nullable=False)
    id_type: Mapped[str] = mapped_column(Text, nullable=False)
    published_on: Mapped[dt.date] = mapped_column(Date, nullable=False)


class SanctionsList(Base):
    """The list loaded: one row (id 1), or none before the first load."""

    __tablename__ = "sanctions_list"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default=text("1"))
    # `publshInformation/Publish_Date`: the list's age counts from it.
    published_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # `publshInformation/Record_Count`, as the file states it.
    record_count: Mapped[int] = mapped_column(Integer, nullable=False)
    address_count: Mapped[int] = mapped_column(Integer, nullable=False)
    source_sha256: Mapped[str] = mapped_column(Text, nullable=False)
