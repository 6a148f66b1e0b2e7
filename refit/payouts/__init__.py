"""Paying sellers in SOL from the treasury, exactly once per order (migration 0011)."""
