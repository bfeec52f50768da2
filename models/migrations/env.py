"""Alembic environment for Hexie, configured from code (there is no alembic.ini).

:func:`hexie.models.db.upgrade` passes an open connection in
``config.attributes["connection"]``; without one, the URL comes from the
``sqlalchemy.url`` option or ``$HEXIE_DATABASE_URL``.
"""
from __future__ import annotations

from alembic import context

from hexie.models.base import Base
from hexie.models import tables  # noqa: F401  (registers the tables on Base.metadata)
from hexie.models.db import database_url, make_engine, owns
from hexie.models.naming import VERSION_TABLE

config = context.config
target_metadata = Base.metadata


def _include_name(name, type_, parent_names) -> bool:
    return type_ != "table" or owns(name)


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # Hexie's history is its own (host.md): a host's Alembic keeps alembic_version,
        # and its tables are none of Hexie's business when comparing or autogenerating.
        version_table=VERSION_TABLE,
        include_name=_include_name,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        version_table=VERSION_TABLE,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or database_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
