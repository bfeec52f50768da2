"""The declarative base, shared column types and the clock.

Everything that every table agrees on lives here: constraint names (so that Alembic
migrations name the same constraints the same way on SQLite and PostgreSQL), the
identifier type of the big tables, and "now" as a timezone-naive UTC datetime.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase

#: Constraint and index names, fixed so that migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Identifier of tables that grow without bound (cases, tasks, audit events):
#: BIGINT on PostgreSQL, but plain INTEGER on SQLite, where only ``INTEGER PRIMARY
#: KEY`` is an alias of the rowid and therefore autoincrements.
BigID = BigInteger().with_variant(Integer(), "sqlite")

#: A materialized org path such as ``/county/t01/t01v01/``. On PostgreSQL it is
#: compared bytewise (collation "C") so that prefix searches (``LIKE '/county/t01/%'``)
#: can use a plain b-tree index whatever the database's default locale is.
PATH_LENGTH = 1000
PathString = String(PATH_LENGTH).with_variant(String(PATH_LENGTH, collation="C"), "postgresql")


def utcnow() -> datetime:
    """The current time as a timezone-naive UTC datetime (the storage convention)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Base class of every table; its metadata carries the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
