"""ORM models, one file per aggregate. Importing this package registers every table."""

from refit.models.address import ShippingAddress
from refit.models.order import Order, OrderStatus, OrderStatusHistory, ShippingEvent
from refit.models.user import User

__all__ = [
    "Order",
    "OrderStatus",
    "OrderStatusHistory",
    "ShippingAddress",
    "ShippingEvent",
    "User",
]
