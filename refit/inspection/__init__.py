"""Receiving and inspecting a device at the warehouse: the verdict, photo evidence, and
sending a device home from inspection (docs/api.md "Operators")."""
