"""Feature flags: stored in PostgreSQL, evaluated in each process from memory (follower.py),
managed by `refit flags` and /api/admin/flags, served to sellers by GET /api/flags.

Elsewhere in the code: `refit.flags.evaluate.is_enabled(session, "name", wallet)` and
`variant(session, "name", wallet)`.
"""
