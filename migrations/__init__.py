"""Alembic migrations; run them with ``offboard db upgrade``."""
