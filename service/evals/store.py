"""The evals feature's tables: evals, their runs (leased to the server running them) and the runs' output
items."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import Database, Store, metadata, of_project
from service.leases import Leases
from service.webhooks.store import write_announced

EVENTS = {"completed": "eval.run.succeeded", "failed": "eval.run.failed",
          "canceled": "eval.run.canceled"}  # webhooks sent when a run ends

evals = sa.Table(
    "evals", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False, server_default="proj_default"),
    sa.Column("doc", sa.JSON, nullable=False),
)
eval_runs = sa.Table(
    "eval_runs", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("eval_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Column("owner", sa.Text),
    sa.Column("heartbeat_at", sa.Float),
)
eval_output_items = sa.Table(
    "eval_output_items", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, unique=True, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
)

ACTIVE_RUN = ("queued", "in_progress")


class EvalStore(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.leases = Leases(db, eval_runs, ACTIVE_RUN)

    # ------------------------------------------------------------------ evals
    def insert_eval(self, doc: dict, project: str) -> None:
        self._write(evals.insert().values(id=doc["id"], doc=doc, project_id=project))

    def get_eval(self, eval_id: str, project: str | None = None) -> dict | None:
        return self._doc(evals, evals.c.id == eval_id, of_project(evals, project))

    def eval_project(self, eval_id: str) -> str | None:
        row = self._one(sa.select(evals.c.project_id).where(evals.c.id == eval_id))
        return None if row is None else row.project_id

    def update_eval(self, doc: dict) -> None:
        self._write(evals.update().where(evals.c.id == doc["id"]).values(doc=doc))

    def list_evals(self, project: str, after: str | None, limit: int, order: str) -> tuple[list[dict], bool]:
        return self._ordered_page(evals, [of_project(evals, project)], after, limit, order)

    def delete_eval(self, eval_id: str) -> bool:
        with self.db.begin() as conn:
            runs = sa.select(eval_runs.c.id).where(eval_runs.c.eval_id == eval_id)
            conn.execute(eval_output_items.delete().where(eval_output_items.c.run_id.in_(runs)))
            conn.execute(eval_runs.delete().where(eval_runs.c.eval_id == eval_id))
            return bool(conn.execute(evals.delete().where(evals.c.id == eval_id)).rowcount)

    # ------------------------------------------------------------------ runs
    def insert_run(self, doc: dict) -> None:
        self._write(eval_runs.insert().values(id=doc["id"], eval_id=doc["eval_id"], status=doc["status"], doc=doc))

    def get_run(self, run_id: str) -> dict | None:
        return self._doc(eval_runs, eval_runs.c.id == run_id)

    def update_run(self, doc: dict, expect: tuple[str, ...]) -> bool:
        """Write the run's document if its status is still one of `expect`."""
        return write_announced(self.db, eval_runs, eval_runs.update().where(eval_runs.c.id == doc["id"],
                                                                            eval_runs.c.status.in_(expect))
                               .values(status=doc["status"], doc=doc), doc, EVENTS,
                               sa.select(evals.c.project_id).where(evals.c.id == doc["eval_id"]))

    def list_runs(self, eval_id: str, after: str | None, limit: int, order: str,
                  status: str | None) -> tuple[list[dict], bool]:
        where = [eval_runs.c.eval_id == eval_id] + ([eval_runs.c.status == status] if status else [])
        return self._ordered_page(eval_runs, where, after, limit, order)

    def delete_run(self, run_id: str) -> bool:
        with self.db.begin() as conn:
            conn.execute(eval_output_items.delete().where(eval_output_items.c.run_id == run_id))
            return bool(conn.execute(eval_runs.delete().where(eval_runs.c.id == run_id)).rowcount)

    # ------------------------------------------------------------------ output items
    def replace_output_items(self, run_id: str, docs: list[dict]) -> None:
        """A run's output items, written at once (a resumed run writes them again, never twice)."""
        with self.db.begin() as conn:
            conn.execute(eval_output_items.delete().where(eval_output_items.c.run_id == run_id))
            if docs:
                conn.execute(eval_output_items.insert(), [
                    {"id": d["id"], "run_id": run_id, "status": d["status"], "doc": d} for d in docs])

    def list_output_items(self, run_id: str, after: str | None, limit: int, order: str,
                          status: str | None) -> tuple[list[dict], bool]:
        where = [eval_output_items.c.run_id == run_id] + ([eval_output_items.c.status == status] if status else [])
        return self._ordered_page(eval_output_items, where, after, limit, order)

    def get_output_item(self, run_id: str, item_id: str) -> dict | None:
        t = eval_output_items
        return self._doc(t, t.c.run_id == run_id, t.c.id == item_id)
