"""Receiving and inspecting a device at the warehouse: the verdict, photo evidence and the
operators' view of an order (docs/api.md "Operators")."""
