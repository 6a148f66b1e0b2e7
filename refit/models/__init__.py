"""ORM models: every table of the service, one file per aggregate, here and nowhere else.
Domains import them from here (below every domain); importing this package registers every
table."""

from refit.models.address import ShippingAddress
from refit.models.auth import EmailVerificationToken, SiwsNonce
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade, DeviceCategory
from refit.models.flag import Flag, FlagAudit, FlagExposure, FlagMode
from refit.models.idempotency import IdempotencyKey
from refit.models.inspection import EvidencePhoto, Inspection, Outcome
from refit.models.notification import OutboundEmail
from refit.models.operator import AuditOutcome, Operator, OperatorAudit, OperatorRole
from refit.models.order import Order, OrderStatus, OrderStatusHistory
from refit.models.payout import HoldReason, Payout, PayoutEvent, PayoutStatus
from refit.models.quote import Quote
from refit.models.sanction import SanctionedAddress, SanctionsList
from refit.models.shipping import (
    LabelPurchase,
    Leg,
    PurchaseStatus,
    RateQuote,
    ReturnShipment,
    ReturnStatus,
    SandboxObject,
    ShippingEvent,
    TrackingStatus,
    WebhookInbox,
)
from refit.models.sweep import SweepAttempt
from refit.models.treasury import TreasuryReading
from refit.models.user import User

__all__ = [
    "AuditOutcome",
    "CatalogModel",
    "CatalogVariant",
    "ConditionGrade",
    "DeviceCategory",
    "EmailVerificationToken",
    "EvidencePhoto",
    "Flag",
    "FlagAudit",
    "FlagExposure",
    "FlagMode",
    "HoldReason",
    "IdempotencyKey",
    "Inspection",
    "LabelPurchase",
    "Leg",
    "Operator",
    "OperatorAudit",
    "OperatorRole",
    "Order",
    "OrderStatus",
    "OrderStatusHistory",
    "OutboundEmail",
    "Outcome",
    "Payout",
    "PayoutEvent",
    "PayoutStatus",
    "PurchaseStatus",
    "Quote",
    "RateQuote",
    "ReturnShipment",
    "ReturnStatus",
    "SanctionedAddress",
    "SanctionsList",
    "SandboxObject",
    "ShippingAddress",
    "ShippingEvent",
    "SiwsNonce",
    "SweepAttempt",
    "TrackingStatus",
    "TreasuryReading",
    "User",
    "WebhookInbox",
]
