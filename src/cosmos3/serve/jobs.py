"""Durable video jobs: one SQLite table plus one folder per job under --storage.

    storage/jobs.sqlite3           id, status, progress (step of steps), timestamps, request, result, error
    storage/jobs/<id>/input.*      the uploaded conditioning file (written before the row exists)
    storage/jobs/<id>/video.mp4    the output, written beside its final name and renamed into place
    storage/jobs/<id>/action.json  the actions of policy / inverse-dynamics jobs (same)

Crash safety (kill -9 at any moment): files appear only by atomic rename; a row says "completed" only after its files
are in place (SQLite WAL, synchronous=FULL). On start, jobs left queued or in progress by the previous process are
marked failed with the reason, and folders without a row (a create that never committed) are removed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
ACTIVE = ("queued", "in_progress")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    steps INTEGER,
    model TEXT,
    request TEXT NOT NULL,
    result TEXT,
    error TEXT
)
"""


class JobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
        for name, sql in (("step", "INTEGER NOT NULL DEFAULT 0"), ("steps", "INTEGER")):
            if name not in columns:  # a database written before step counts existed
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def new_id() -> str:
        return "video_" + uuid.uuid4().hex

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    # -------------------------------------------------------------------------------------------- recovery

    def recover(self) -> list[str]:
        """Mark the previous process's unfinished jobs failed; drop folders that never got a row."""
        now = int(time.time())
        error = json.dumps({"code": "interrupted", "message": "the server stopped while this job was queued or "
                                                              "running; submit it again"})
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE status IN ('queued', 'in_progress')").fetchall()
            self._db.execute("UPDATE jobs SET status='failed', error=?, completed_at=? "
                             "WHERE status IN ('queued', 'in_progress')", (error, now))
            known = {r["id"] for r in self._db.execute("SELECT id FROM jobs").fetchall()}
        for folder in self.jobs_dir.iterdir():
            if folder.is_dir() and folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)
        return [r["id"] for r in rows]

    # -------------------------------------------------------------------------------------------- rows

    def create(self, job_id: str, request: dict[str, Any], model: str, steps: int | None = None) -> dict:
        """A queued job; `steps`: the denoising steps it will run in all (every sampling run together)."""
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, created_at, status, progress, step, steps, model, request) "
                             "VALUES (?, ?, 'queued', 0, 0, ?, ?, ?)",
                             (job_id, int(time.time()), steps, model, json.dumps(request)))
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _row(row) if row else None

    def list(self, limit: int = 20, after: str | None = None, order: str = "desc") -> tuple[list[dict], bool]:
        direction = "DESC" if order == "desc" else "ASC"
        query, args = "SELECT * FROM jobs", []
        with self._lock:
            if after is not None:
                anchor = self._db.execute("SELECT created_at, rowid FROM jobs WHERE id=?", (after,)).fetchone()
                if anchor is None:
                    return [], False
                cmp = "<" if order == "desc" else ">"
                query += f" WHERE (created_at, rowid) {cmp} (?, ?)"
                args += [anchor["created_at"], anchor["rowid"]]
            query += f" ORDER BY created_at {direction}, rowid {direction} LIMIT ?"
            rows = self._db.execute(query, args + [limit + 1]).fetchall()
        return [_row(r) for r in rows[:limit]], len(rows) > limit

    def set_running(self, job_id: str) -> bool:
        """queued -> in_progress; False when the job is gone or no longer queued (cancelled meanwhile)."""
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET status='in_progress' WHERE id=? AND status='queued'", (job_id,))
        return cur.rowcount == 1

    def set_progress(self, job_id: str, progress: int, step: int | None = None, steps: int | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET progress=?, step=COALESCE(?, step), steps=COALESCE(?, steps) "
                             "WHERE id=? AND status='in_progress'", (progress, step, steps, job_id))

    def finish(self, job_id: str, status: str, result: dict | None = None, error: dict | None = None) -> bool:
        """Set a final status unless the job already has one (a cancel wins over a late completion)."""
        assert status in ("completed", "failed", "cancelled")
        progress_sql = ", progress=100, step=COALESCE(steps, step)" if status == "completed" else ""
        with self._lock:
            cur = self._db.execute(
                f"UPDATE jobs SET status=?, result=?, error=?, completed_at=?{progress_sql} "
                "WHERE id=? AND status IN ('queued', 'in_progress')",
                (status, json.dumps(result) if result is not None else None,
                 json.dumps(error) if error is not None else None, int(time.time()), job_id))
        return cur.rowcount == 1

    def delete(self, job_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return cur.rowcount == 1

    def count_active(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress')"
                                    ).fetchone()[0]


def _row(row: sqlite3.Row) -> dict:
    out = dict(row)
    for key in ("request", "result", "error"):
        out[key] = json.loads(out[key]) if out.get(key) else None
    return out
