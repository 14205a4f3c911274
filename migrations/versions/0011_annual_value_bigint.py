"""annual values in 64 bits: tenants.annual_value and exit_feedback.annual_value become BIGINT

A contract in yen, won or rupiah outgrows a 32-bit INTEGER (2,147,483,647 units). On SQLite
every INTEGER is already 64 bits, so only PostgreSQL changes. Its ALTER rewrites both tables
under an exclusive lock, so reads and writes of tenants wait until it is done.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 05:14:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('tenants', 'exit_feedback')


def upgrade() -> None:
    """Upgrade schema."""
    _retype(sa.BigInteger(), was=sa.Integer())


def downgrade() -> None:
    """Downgrade schema: fails, changing nothing, while a value does not fit 32 bits."""
    _retype(sa.Integer(), was=sa.BigInteger())


def _retype(to: sa.types.TypeEngine, *, was: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.alter_column(table, 'annual_value', type_=to, existing_type=was, existing_nullable=True)
