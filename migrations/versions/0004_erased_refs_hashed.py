"""Erased references become SHA-256 of the JSON array of their ids (`projections.forgetting.ref_of`).

Before, a meeting or customer was `expert/id`, ambiguous when an id holds a `/`. Rows written
that way are rewritten: a payment id is one id; a customer id (`c_` + hex) never holds a `/`,
so `expert/c_…` splits at its last one; a meeting ref is rewritten once per `/` it holds,
every reading of it, so that nothing erased can come back (at worst a meeting whose ids
collide with an erased one's stays out too).

Revision ID: 0004
Revises: 0003
"""
import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# erased_at is read and written back as stored (compared only with the other rows')
refs = sa.table("erased_refs", sa.column("kind", sa.String), sa.column("ref", sa.String),
                sa.column("erased_at", sa.DateTime(timezone=True)))


def ref_of(*ids: str) -> str:
    """The ref of a thing named by these ids: SHA-256 of their JSON array (what the service's
    `projections.forgetting.ref_of` computes, and must keep computing for the refs stored)."""
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()


def readings(kind: str, old: str) -> list[str]:
    if kind == "payment":
        return [ref_of(old)]
    if kind == "customer" and "/" in old:
        return [ref_of(*old.rsplit("/", 1))]
    cuts = [i for i, ch in enumerate(old) if ch == "/"]
    return [ref_of(old[:i], old[i + 1:]) for i in cuts] or [ref_of(old)]


def upgrade() -> None:
    bind = op.get_bind()
    new: dict[tuple[str, str], object] = {}
    for kind, old, erased_at in bind.execute(sa.select(refs.c.kind, refs.c.ref, refs.c.erased_at)).all():
        for ref in readings(kind, old):
            key = (kind, ref)
            new[key] = max(erased_at, new.get(key, erased_at))
    bind.execute(refs.delete())
    if new:
        bind.execute(refs.insert(), [{"kind": k, "ref": r, "erased_at": at} for (k, r), at in sorted(new.items())])


def downgrade() -> None:
    raise RuntimeError("erased references cannot be turned back into joined ids; restore a backup instead")
