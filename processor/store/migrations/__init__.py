"""Alembic migrations of the store (applied by ``bounce-processor db upgrade`` and at start-up)."""
