"""Alembic migrations of the registry database (``suitcase server migrate``)."""
