"""`refit backup` and `refit restore`: the database's own dump tools (pg_dump, pg_restore) for
the self-hosted and embedded set-ups. Supabase has its own backups (docs/backups.md).

- `target.py`: which database, and how the tools reach it without showing its password;
- `tools.py`: pg_dump and pg_restore at least as new as the server, run with a spinner;
- `archive.py`: what a dump file holds (tables, PostgreSQL versions, migration);
- `dump.py`: the backup; `restore.py`: the restore into an empty database, then migrated;
- `cli.py`: the two commands (loaded by refit/cli.py only when one of them runs).
"""
