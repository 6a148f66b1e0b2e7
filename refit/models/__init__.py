"""ORM models, one file per aggregate. Importing this package registers every table."""

from refit.models.address import ShippingAddress
from refit.models.auth import EmailVerificationToken, SiwsNonce
from refit.models.catalog import CatalogModel, CatalogVariant, ConditionGrade, DeviceCategory
from refit.models.idempotency import IdempotencyKey
from refit.models.notification import OutboundEmail
from refit.models.operator import Operator, OperatorRole
from refit.models.order import Order, OrderStatus, OrderStatusHistory
from refit.models.quote import Quote
from refit.models.user import User

__all__ = [
    "CatalogModel",
    "CatalogVariant",
    "ConditionGrade",
    "DeviceCategory",
    "EmailVerificationToken",
    "IdempotencyKey",
    "Operator",
    "OperatorRole",
    "Order",
    "OrderStatus",
    "OrderStatusHistory",
    "OutboundEmail",
    "Quote",
    "ShippingAddress",
    "SiwsNonce",
    "User",
]
