"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.db import Database
from storage.models import Base


@pytest.fixture
def database_url(db_url) -> str:
    return db_url


def test_migrated_schema_matches_the_models(database_url):
    db = Database(database_url)  # the db_url fixture has already upgraded it to head
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            differences = compare_metadata(context, Base.metadata)
    finally:
        db.dispose()
    assert differences == [], "models and migrations disagree; write a migration:\n" + "\n".join(map(str, differences))
