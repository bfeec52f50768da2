"""The example host's own Alembic environment (version table: the default ``alembic_version``)."""
from alembic import context
from sqlalchemy import create_engine

from models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - run from the command line
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    connection = engine.connect()
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
