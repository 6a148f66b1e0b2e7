"""The ORM models and the schema Alembic migrates to agree, column by column.

A model column the database lacks fails at the first query that touches it; a NOT NULL the
model thinks optional fails at insert; a type that differs round-trips wrongly. Alembic's own
comparison finds these on a freshly migrated database. Tables only the database has (the job
queue's, alembic_version) and index or constraint differences are not this test's concern.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData

import refit
from refit import db

# What a difference between a model and the database is, as Alembic names it.
COLUMN_LEVEL = {"add_table", "add_column", "remove_column", "modify_nullable", "modify_type"}


def _all_models() -> MetaData:
    """Base.metadata once every module under refit/ is imported: a model defined anywhere is
    registered, whether or not refit.models re-exports it."""
    for module in pkgutil.walk_packages(refit.__path__, "refit."):
        if module.name != "refit.__main__":  # runs the CLI when imported
            importlib.import_module(module.name)
    return db.Base.metadata


def _describe(diff: tuple[Any, ...]) -> str:
    kind = diff[0]
    if kind == "add_table":
        return f"{diff[1].name}: the model's table is missing from the database"
    if kind == "add_column":
        _, _, table, column = diff
        return f"{table}.{column.name}: in the model ({column.type}), not in the database"
    if kind == "remove_column":
        _, _, table, column = diff
        return f"{table}.{column.name}: in the database ({column.type}), not in the model"
    _, _, table, column, _, database, model = diff
    what = "nullable" if kind == "modify_nullable" else "type"
    return f"{table}.{column}: {what} is {model} in the model, {database} in the database"


def _differences(connection: Connection, metadata: MetaData) -> list[str]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    found = []
    for entry in compare_metadata(context, metadata):
        # Changes to one column come grouped in a list; the others alone.
        for diff in entry if isinstance(entry, list) else [entry]:
            if diff[0] in COLUMN_LEVEL:
                found.append(_describe(diff))
    return sorted(found)


async def test_every_model_column_matches_the_migrated_database(database_url):
    metadata = _all_models()
    assert {"users", "orders", "order_status_history", "shipping_label_purchases"} <= set(
        metadata.tables
    )
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences, metadata)
    finally:
        await engine.dispose()
    assert differences == [], "\n".join(differences)
