"""`transition()` for a job's transaction sent as messages (one_message.job_messages): the
same door (refit.orders.service: its check, its column changes, its log line and event),
its writes as statements the caller sends with its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from refit import one_message
from refit.models import Order, OrderStatus
from refit.orders import follow_ups
from refit.orders.service import (
    _ACTOR,
    Locked,
    _check_move,
    _log_move,
    _move,
    _publish_step,
)

# The order locked for a move in a transaction sent as messages (`move_steps`): every column,
# and the database's clock at the lock (the move's moment, as `_lock` takes it).
LOCK_FOR_MOVE = (
    "SELECT o.*, clock_timestamp() AS locked_at FROM orders o WHERE o.id = %(order_id)s FOR UPDATE"
)
# (attribute, column, the StrEnum a text column holds or None), as the ORM would load them.
_ORDER_COLUMNS = [
    (c.key, c.columns[0].name, getattr(c.columns[0].type, "enum", None))
    for c in Order.__mapper__.column_attrs
]
_HISTORY_INSERT = (
    "INSERT INTO order_status_history (order_id, from_status, status, actor, notes, metadata, "
    "created_at) VALUES (%(order_id)s, %(from_status)s, %(status)s, %(actor)s, %(notes)s, "
    "%(metadata)s, %(at)s)"
)


def locked_row(row: Mapping[str, Any]) -> Locked:
    """LOCK_FOR_MOVE's row: the order (in no session) and the moment of its lock."""
    order = Order(
        **{
            key: enum(row[column]) if enum is not None and row[column] is not None else row[column]
            for key, column, enum in _ORDER_COLUMNS
        }
    )
    return Locked(order, row["locked_at"])


def move_steps(
    locked: Locked,
    to_status: OrderStatus,
    *,
    actor: str,
    notes: str | None = None,
    metadata: dict[str, Any] | None = None,
    expected_from: set[OrderStatus] | None = None,
) -> list[one_message.Step]:
    """`transition()` for a job's transaction sent as messages (one_message.job_messages),
    on the order as LOCK_FOR_MOVE read it there (`locked_row`): the same check (409), and the
    same writes (status and stamps, the history row, the realtime event, the jobs that follow)
    as statements for the caller to send with its own. `locked.order` moves in memory too.

    Shipping columns the caller changed in the same transaction are set on `locked.order`
    first: the move's email shows them (the label, its tracking number)."""
    if not _ACTOR.fullmatch(actor):
        raise ValueError(f"actor must be user:/operator:/system:<who>, got {actor!r}")
    to_status = OrderStatus(to_status)
    order, now = locked.order, locked.at
    from_status = order.status
    _check_move(order, to_status, expected_from)
    values = {
        name: value.value if isinstance(value, OrderStatus) else value
        for name, value in _move(order, to_status, now).items()
    }
    assignments = ", ".join(f"{name} = %({name})s" for name in values)
    steps = [
        one_message.Step(
            f"UPDATE orders SET {assignments} WHERE id = %(id)s",  # noqa: S608 (our column names)
            {**values, "id": order.id},
        ),
        one_message.Step(
            _HISTORY_INSERT,
            {
                "order_id": order.id,
                "from_status": from_status.value,
                "status": to_status.value,
                "actor": actor,
                "notes": notes,
                "metadata": Jsonb(metadata),
                "at": now,
            },
        ),
        _publish_step(order.id, order.user_id, from_status, to_status),
        *follow_ups.after_move_steps(order, from_status, to_status, notes=notes, metadata=metadata),
    ]
    _log_move(order, from_status, to_status, actor)
    return steps
