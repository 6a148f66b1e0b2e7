"""Reading OFAC's SDN list (`SDN.XML`) for the Solana addresses it names.

The file is tens of megabytes: it is read in chunks through expat, keeping only the few
fields screening needs, so memory stays flat whatever its size. OFAC has published it under
more than one default namespace (`http://tempuri.org/sdnList.xsd`, the Sanctions List
Service's URL), so elements are matched by their local name.

A document type declaration is refused outright: OFAC's file has none, and without one no
entity can be declared, so no external entity is ever fetched and no entity expansion (the
"billion laughs") can happen.

OFAC files a digital-currency address as an ID of type `Digital Currency Address - <symbol>`,
and its symbols are not reliable (addresses of one chain have been listed under another's), so
every such ID is screened by its value: kept when it is a valid Solana public key (base58 of
32 bytes, written canonically), whatever its symbol.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

import base58

DIGITAL_CURRENCY_ADDRESS = "Digital Currency Address - "
CHUNK_BYTES = 1 << 20
# The elements read, by their path of local names from the root.
_ROOT = ("sdnList",)
_PUBLISHED = (*_ROOT, "publshInformation", "Publish_Date")  # sic: OFAC's spelling
_RECORD_COUNT = (*_ROOT, "publshInformation", "Record_Count")
_ENTRY = (*_ROOT, "sdnEntry")
_ENTRY_FIELDS = {(*_ENTRY, name): name for name in ("uid", "firstName", "lastName")}
_ID = (*_ENTRY, "idList", "id")
_ID_FIELDS = {(*_ID, name): name for name in ("uid", "idType", "idNumber")}


class SdnFileError(ValueError):
    """The file is not a readable SDN list: the message says where and why."""


@dataclass(frozen=True)
class ListedAddress:
    """A Solana address the list names, with the entry (`sdnEntry`) naming it."""

    address: str
    sdn_uid: int
    sdn_name: str
    id_type: str


@dataclass(frozen=True)
class SdnList:
    published_on: dt.date
    record_count: int  # as the file states it
    entries: int  # `sdnEntry` elements read
    addresses: list[ListedAddress]
    # Digital-currency IDs that are not Solana addresses (other chains, typos).
    other_currency_ids: int
    sha256: str


def is_solana_address(value: str) -> bool:
    """Base58 of exactly 32 bytes, written as base58 writes them (so it compares exactly)."""
    try:
        decoded = base58.b58decode(value)
    except ValueError:
        return False
    return len(decoded) == 32 and base58.b58encode(decoded).decode() == value


def read(path: Path, on_bytes: Callable[[int], None] | None = None) -> SdnList:
    """The list in the file at `path`; `on_bytes(n)` after each chunk read (a progress bar)."""
    try:
        with path.open("rb") as stream:
            return parse(stream, on_bytes)
    except OSError as exc:
        raise SdnFileError(f"{path}: {exc.strerror or exc}") from exc


def parse(stream: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> SdnList:
    reader = _Reader()
    digest = hashlib.sha256()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    try:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            parser.Parse(chunk, False)
            if on_bytes is not None:
                on_bytes(len(chunk))
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise SdnFileError(
            f"not well-formed XML: {expat.errors.messages[exc.code]}, "
            f"line {exc.lineno} column {exc.offset}"
        ) from exc
    return reader.result(digest.hexdigest())


def _refuse_doctype(*_: object) -> None:
    raise SdnFileError("a document type declaration (DOCTYPE): OFAC's SDN list has none")


def _refuse_entity(*_: object) -> None:
    raise SdnFileError("an entity declaration: OFAC's SDN list has none")


@dataclass
class _Reader:
    # The path of local names to each open element, the root's first.
    paths: list[tuple[str, ...]] = field(default_factory=lambda: [()])
    chars: list[str] = field(default_factory=list)
    published: str | None = None
    record_count: str | None = None
    entries: int = 0
    entry: dict[str, str] = field(default_factory=dict)
    id_fields: dict[str, str] = field(default_factory=dict)
    found: dict[str, ListedAddress] = field(default_factory=dict)
    other_currency_ids: int = 0

    def start(self, name: str, _attributes: object) -> None:
        local = name[name.rfind(" ") + 1 :]  # after the namespace, if any
        parent = self.paths[-1]
        if not parent and local != _ROOT[0]:
            raise SdnFileError(f"the root element is <{local}>, not OFAC's <sdnList>")
        where = (*parent, local)
        self.paths.append(where)
        self.chars = []
        if where == _ENTRY:
            self.entry = {}
        elif where == _ID:
            self.id_fields = {}

    def text(self, data: str) -> None:
        self.chars.append(data)

    def end(self, _name: str) -> None:
        where = self.paths.pop()
        # Most elements (names, addresses, programs) are not read: nothing to do for them.
        if where in _ENTRY_FIELDS:
            self.entry[_ENTRY_FIELDS[where]] = "".join(self.chars).strip()
        elif where in _ID_FIELDS:
            self.id_fields[_ID_FIELDS[where]] = "".join(self.chars).strip()
        elif where == _ID:
            self._id_ended()
        elif where == _ENTRY:
            self.entries += 1
        elif where == _PUBLISHED:
            self.published = "".join(self.chars).strip()
        elif where == _RECORD_COUNT:
            self.record_count = "".join(self.chars).strip()

    def _id_ended(self) -> None:
        id_type = self.id_fields.get("idType", "")
        if not id_type.startswith(DIGITAL_CURRENCY_ADDRESS):
            return
        address = self.id_fields.get("idNumber", "")
        if not is_solana_address(address):
            self.other_currency_ids += 1
            return
        # uid and names come before idList in OFAC's schema; an address listed twice keeps
        # its first entry.
        uid = self.entry.get("uid", "")
        if not uid.isdigit():
            raise SdnFileError(f"the entry listing {address} has no numeric <uid>")
        name = ", ".join(p for p in (self.entry.get("lastName"), self.entry.get("firstName")) if p)
        self.found.setdefault(address, ListedAddress(address, int(uid), name, id_type))

    def result(self, sha256: str) -> SdnList:
        if self.published is None:
            raise SdnFileError("no <publshInformation><Publish_Date>: not OFAC's SDN list")
        try:
            published_on = dt.datetime.strptime(self.published, "%m/%d/%Y").date()
        except ValueError as exc:
            raise SdnFileError(
                f"Publish_Date {self.published[:40]!r} is not a date as OFAC writes it (MM/DD/YYYY)"
            ) from exc
        if self.record_count is None or not self.record_count.isdigit():
            raise SdnFileError("no numeric <publshInformation><Record_Count>")
        return SdnList(
            published_on=published_on,
            record_count=int(self.record_count),
            entries=self.entries,
            addresses=list(self.found.values()),
            other_currency_ids=self.other_currency_ids,
            sha256=sha256,
        )
