"""Live order updates: Server-Sent Events fed by PostgreSQL's LISTEN/NOTIFY.

`transition()` (refit/orders) sends `pg_notify('order_events')` with each move; the API
process's one LISTEN connection (refit/listen.py) wakes the streams of that order
(`listener.py`); each stream re-reads the
history rows after the last one it sent (`stream.py`), so a notification is only a wake-up and
nothing is lost or sent twice. The streams woken by one change share that read when they would
read the same thing (same seller, order and last event: `listener.SharedReads`).
`tickets.py` lets a browser's EventSource, which sends no headers, authenticate with a
short-lived single-order ticket in the URL.
"""
