"""Shipping addresses in and out. Field rules are the carrier's: US ZIPs, 2-letter states."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV "
    "NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY "
    "AS GU MP PR VI UM AA AE AP".split()
)
US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
COUNTRY = re.compile(r"^[A-Z]{2}$")

Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
OptionalLine = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=30, pattern=r"^[0-9+()\-. x]*$")
]

# Where a parcel goes: what a carrier rates and validates, so what an address's fingerprint and
# a carrier's recommended form are made of.
PLACE_FIELDS = ("name", "street1", "street2", "city", "state", "zip", "country")
# Everything a seller writes of an address, all of it sent to the carrier (phone included).
# The schemas below spell these out field by field (each has its own rules); a test holds
# them to these lists.
ADDRESS_FIELDS = (*PLACE_FIELDS, "phone")


def _normalise(data: Any) -> Any:
    """Upper-case country and US states, and check what carriers will refuse anyway."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key in ("country", "state"):
        if isinstance(data.get(key), str):
            data[key] = data[key].strip().upper()
    for key in ("street2", "phone"):
        if isinstance(data.get(key), str) and not data[key].strip():
            data[key] = None
    return data


def _check(country: str, state: str, zip_code: str) -> None:
    if not COUNTRY.match(country):
        raise ValueError("country must be an ISO 3166-1 alpha-2 code such as US")
    if country == "US":
        if state not in US_STATES:
            raise ValueError("state must be a 2-letter US state code such as CA")
        if not US_ZIP.match(zip_code):
            raise ValueError("zip must be a US ZIP code: 12345 or 12345-6789")


class AddressFields(BaseModel):
    """A complete address (create, inline validation, and a PATCH once merged)."""

    model_config = ConfigDict(extra="forbid")

    name: Line
    street1: Line
    street2: OptionalLine | None = None
    city: Line
    state: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
    zip: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
    country: str = "US"
    phone: Phone | None = None

    @model_validator(mode="before")
    @classmethod
    def _upper(cls, data: Any) -> Any:
        return _normalise(data)

    @model_validator(mode="after")
    def _rules(self) -> AddressFields:
        _check(self.country, self.state, self.zip)
        return self


class AddressCreate(AddressFields):
    is_default: bool = False


class AddressUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Line | None = None
    street1: Line | None = None
    street2: OptionalLine | None = None
    city: Line | None = None
    state: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)] | None
    ) = None
    zip: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)] | None
    ) = None
    country: str | None = None
    phone: Phone | None = None
    is_default: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _upper(cls, data: Any) -> Any:
        return _normalise(data)


class RecommendedAddress(BaseModel):
    """The carrier-visible place (PLACE_FIELDS): what a carrier recommends, and the core of a
    saved address as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    street1: str
    street2: str | None
    city: str
    state: str
    zip: str
    country: str


class AddressRead(RecommendedAddress):
    id: uuid.UUID
    phone: str | None
    is_default: bool
    is_validated: bool
    validation_data: dict[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime


class AddressPage(BaseModel):
    items: list[AddressRead]
    next_cursor: str | None


class ValidateAddressRequest(BaseModel):
    """`{address_id}` for a saved address, or the address fields inline."""

    model_config = ConfigDict(extra="forbid")

    address_id: uuid.UUID | None = None
    name: str | None = None
    street1: str | None = None
    street2: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    phone: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ValidateAddressRequest:
        inline = self.model_dump(exclude={"address_id"}, exclude_none=True)
        if self.address_id is not None and inline:
            raise ValueError("send either address_id or an inline address, not both")
        if self.address_id is None:
            AddressFields.model_validate({"name": "-", **inline})
        return self

    def inline(self) -> AddressFields:
        data = self.model_dump(exclude={"address_id"}, exclude_none=True)
        return AddressFields.model_validate({"name": data.pop("name", None) or "-", **data})


class CarrierMessageRead(BaseModel):
    text: str
    code: str | None = None
    source: str | None = None
    type: str | None = None


class ValidateAddressResponse(BaseModel):
    is_valid: bool
    messages: list[CarrierMessageRead] = Field(default_factory=list)
    recommended_address: RecommendedAddress | None = None
