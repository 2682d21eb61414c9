"""The campaigns table (`ralph harden`, run/campaign.py): a campaign recorded and updated, and
read back with its phases' runs and what they spent so far.

`CampaignRecords` is mixed into `Journal`, on the same connection and transactions."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from ..models.base import Usage
from ..redact import redact, redact_obj
from .queries import LATEST
from .schema import TOKENS, dumps


class CampaignRecords:
    """Writing and reading campaigns (mixed into Journal)."""

    conn: sqlite3.Connection
    _transaction: Callable[[Callable[[sqlite3.Connection], None]], None]  # Journal's
    list_runs: Callable[[], list[dict[str, Any]]]  # JournalQueries'

    def start_campaign(self, campaign_id: str, phases: list[str], config: dict[str, Any]) -> None:
        """Record a new campaign: its phases and its config (redacted)."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO campaigns (id, phases, config, started) VALUES (?, ?, ?, ?)",
                (campaign_id, dumps(phases), dumps(redact_obj(config)), time.time()),
            )

        self._transaction(write)

    def update_campaign(self, campaign_id: str, **values: Any) -> None:
        """Set columns of a campaign (branch, worktree, base_commit, status, exit_code,
        exit_reason, ended, pr_url)."""
        allowed = {"branch", "worktree", "base_commit", "status", "exit_code", "exit_reason",
                   "ended", "pr_url"}  # fmt: skip
        assert set(values) <= allowed, values
        if not values:
            return

        cleaned = {k: redact(v) if isinstance(v, str) else v for k, v in values.items()}

        def write(db: sqlite3.Connection) -> None:
            sets = ", ".join(f"{k} = ?" for k in cleaned)
            db.execute(
                f"UPDATE campaigns SET {sets} WHERE id = ?", (*cleaned.values(), campaign_id)
            )

        self._transaction(write)

    def set_campaign_budgets(self, campaign_id: str, budgets: dict[str, Any]) -> None:
        """Record new budgets in a campaign's config (`ralph resume CAMPAIGN --max-cost …`):
        the phases after this session and a later resume read them from there."""

        def write(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT config FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
            config = json.loads(row[0] or "{}") if row is not None else {}
            config.update(budgets)
            db.execute("UPDATE campaigns SET config = ? WHERE id = ?", (dumps(config), campaign_id))

        self._transaction(write)

    def resolve_campaign(self, ref: str) -> str | None:
        """A campaign's id from its id, a unique part of it, `latest`, or the id of one of its
        runs; None when nothing matches."""
        if ref == LATEST:
            row = self.conn.execute(
                "SELECT id FROM campaigns ORDER BY started DESC LIMIT 1"
            ).fetchone()
            return str(row[0]) if row else None
        row = self.conn.execute("SELECT campaign_id FROM runs WHERE id = ?", (ref,)).fetchone()
        if row is not None and row[0]:
            return str(row[0])
        ids = [r[0] for r in self.conn.execute("SELECT id FROM campaigns").fetchall()]
        if ref in ids:
            return ref
        found = [i for i in ids if ref in i]
        return found[0] if len(found) == 1 else None

    def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        """A campaign's row, with its phases (a list) and config (a dict)."""
        row = self.conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["phases"] = json.loads(row["phases"] or "[]")
        data["config"] = json.loads(row["config"] or "{}")
        return data

    def campaign_runs(self, campaign_id: str) -> list[dict[str, Any]]:
        """The runs of a campaign's phases, in the order they started (`phase` added), with
        the run's status as `ralph runs` shows it (a dead process's run is crashed)."""
        rows = self.conn.execute(
            "SELECT id, phase FROM runs WHERE campaign_id = ? ORDER BY started, rowid",
            (campaign_id,),
        ).fetchall()
        listed = {r["id"]: r for r in self.list_runs()}
        out = []
        for row in rows:
            run = dict(listed.get(row["id"]) or {"id": row["id"]})
            run["phase"] = row["phase"]
            out.append(run)
        return out

    def campaign_totals(self, campaign_id: str) -> tuple[Usage, float | None, float]:
        """What a campaign's runs used so far: tokens, cost (None: a price was unknown) and
        elapsed seconds; its budgets count all of it."""
        row = self.conn.execute(
            f"SELECT {', '.join(f'COALESCE(SUM({t}), 0)' for t in TOKENS)}, "
            "COALESCE(SUM(cost_usd), 0), MIN(cost_known), COALESCE(SUM(elapsed_s + "
            "CASE WHEN session_started IS NOT NULL THEN MAX(0, last_seen - session_started) "
            "ELSE 0 END), 0) FROM runs WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        usage = Usage(*(int(v) for v in row[:4]))
        cost = None if row[5] == 0 else float(row[4])
        return usage, cost, float(row[6])
