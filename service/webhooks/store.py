"""The webhooks feature's tables: endpoints (their signing secrets encrypted), and deliveries: one row an event
an endpoint, written by `enqueue` in the transaction of the state change that causes the event (so a change
that is stored is always announced, and an announced one always stored), then sent by any server, leased
to one at a time (service/leases.py), until it is delivered or its retry window ends."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from service.db import Database, Store, after_id, metadata
from service.ids import new_id
from service.leases import Leases
from service.webhooks.protocol import Event, EventData

webhook_endpoints = sa.Table(
    "webhook_endpoints", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),  # the endpoint object (no secret)
    sa.Column("secret", sa.Text, nullable=False),  # the signing secret, encrypted
    sa.Column("old_secret", sa.Text),  # the previous one, encrypted, while it is still kept
    sa.Column("old_secret_until", sa.Float),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("endpoint_id", sa.Text, nullable=False, index=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the event's JSON, as signed and sent on every attempt
    sa.Column("status", sa.Text, nullable=False, index=True),  # pending, delivered, failed
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float),
    sa.Column("last_attempt_at", sa.Float),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.Float),
    sa.Column("owner", sa.Text),  # the server sending it now
    sa.Column("heartbeat_at", sa.Float),
)


_listeners: list[Callable[[], None]] = []  # this process's senders (Sender.start), told of new deliveries


def listen(listener: Callable[[], None]) -> Callable[[], None]:
    """Call `listener` (from any thread) after each transaction of this process that wrote deliveries; the
    function that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def enqueue(conn, project: str, event_type: str, object_id: str) -> int:
    """The event for every endpoint of `project` that wants it, written on `conn` (the caller's transaction);
    how many deliveries that made."""
    rows = conn.execute(sa.select(webhook_endpoints.c.id, webhook_endpoints.c.doc)
                        .where(webhook_endpoints.c.project_id == project)).all()
    wanted = [r.id for r in rows if event_type in r.doc["event_types"]]
    if not wanted:
        return 0
    now = time.time()
    event_id = new_id("evt_", 32)
    payload = Event(id=event_id, created_at=int(now), type=event_type, data=EventData(id=object_id)).model_dump_json()
    conn.execute(webhook_deliveries.insert(), [
        dict(id=new_id("whd_", 32), project_id=project, endpoint_id=endpoint, event_id=event_id,
             event_type=event_type, payload=payload, status="pending", created_at=now, attempts=0,
             next_attempt_at=now) for endpoint in wanted])
    return len(wanted)


class WebhookStore(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.leases = Leases(db, webhook_deliveries, ("pending",))

    # ------------------------------------------------------------------ endpoints
    def insert(self, doc: dict, project: str, secret: str) -> None:
        self._write(webhook_endpoints.insert().values(id=doc["id"], project_id=project, doc=doc, secret=secret))

    def endpoint(self, endpoint_id: str, project: str | None) -> sa.Row | None:
        t = webhook_endpoints
        where = [t.c.id == endpoint_id] + ([t.c.project_id == project] if project is not None else [])
        return self._one(sa.select(t).where(*where))

    def list(self, project: str, after: str | None, limit: int, order: str) -> tuple[list[dict], bool]:
        return self._ordered_page(webhook_endpoints, [webhook_endpoints.c.project_id == project], after, limit, order)

    def update(self, endpoint_id: str, **values) -> None:
        self._write(webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint_id).values(**values))

    def delete(self, endpoint_id: str) -> None:
        """The endpoint, and what is still to be sent to it."""
        with self.db.begin() as conn:
            conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id))
            conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.endpoint_id == endpoint_id,
                                                           webhook_deliveries.c.status == "pending"))

    # ------------------------------------------------------------------ deliveries
    def deliveries(self, endpoint_id: str, after: str | None, limit: int) -> tuple[list[sa.Row], bool]:
        t = webhook_deliveries
        rows = self._all(sa.select(t).where(t.c.endpoint_id == endpoint_id, after_id(t, after))
                         .order_by(t.c.seq.desc()).limit(limit + 1))
        return rows[:limit], len(rows) > limit

    def delivery(self, delivery_id: str) -> sa.Row | None:
        return self._one(sa.select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id))

    def claim(self, owner: str, lease_seconds: float) -> str | None:
        """A delivery that is due and held by nobody (or by a server that stopped renewing), leased to `owner`."""
        t = webhook_deliveries
        due = sa.and_(t.c.status == "pending", t.c.next_attempt_at <= time.time(),
                      sa.or_(t.c.owner.is_(None), self.leases.stale(lease_seconds)))
        return self.leases.claim(owner, lease_seconds, where=due)

    def attempted(self, delivery_id: str, owner: str, **values) -> bool:
        """Record an attempt by `owner` and let the lease go; False if another server had taken it back."""
        t = webhook_deliveries
        return self._write(t.update().where(t.c.id == delivery_id, t.c.owner == owner)
                           .values(owner=None, heartbeat_at=None, **values)) > 0

    def backlog(self, lease_seconds: float) -> tuple[int, float | None]:
        """(deliveries pending, when the first that nobody holds falls due: None if none)."""
        t = webhook_deliveries
        free = sa.or_(t.c.owner.is_(None), self.leases.stale(lease_seconds))
        return self._one(sa.select(sa.func.count(), sa.func.min(sa.case((free, t.c.next_attempt_at))))
                         .where(t.c.status == "pending"))


def write_announced(db: Database, table: sa.Table, statement, doc: dict, events: dict[str, str], project) -> bool:
    """Run `statement` (a conditional write of `doc`, an object of `table`) and, when it moves the object into a
    status that `events` names, enqueue that event for the object's project (`project`: a query of it), all
    in one transaction; whether the statement wrote."""
    made = 0
    with db.begin(immediate=True) as conn:
        before = conn.execute(sa.select(table.c.status).where(table.c.id == doc["id"]).with_for_update()).scalar()
        if conn.execute(statement).rowcount == 0:
            return False
        event = events.get(doc["status"])
        if event is not None and before != doc["status"]:
            made = enqueue(conn, conn.execute(project).scalar(), event, doc["id"])
    if made:  # committed: this server's sender sends them now
        for listener in list(_listeners):
            listener()
    return True
