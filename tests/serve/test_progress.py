"""Progress of video jobs in the API: `progress` (0-100) with `step` of `steps` on GET /v1/videos/{id}, and the
server-sent events of GET /v1/videos/{id}/events (until the job ends), on a live server with a tiny checkpoint."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import httpx

from serve_support import assert_error

SMALL = {"prompt": "a red block slides left", "size": "64x64", "num_frames": "5", "guidance_scale": "3"}


def _events(server, video_id: str, timeout: float = 120, out: list | None = None) -> list[tuple[str, dict]]:
    """Every event of the job's stream (appended to `out` as they come), read until the server closes it."""
    out, name = ([] if out is None else out), None
    with httpx.Client(base_url=server.url, timeout=timeout) as c:
        with c.stream("GET", f"/v1/videos/{video_id}/events") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    out.append((name, json.loads(line[5:])))
    return out


def _monotonic(values: list) -> bool:
    return all(a <= b for a, b in zip(values, values[1:]))


def test_progress_and_steps_rise_to_100(client):
    created = client.post("/v1/videos", data={**SMALL, "num_inference_steps": "40"}).json()
    assert created["step"] == 0 and created["steps"] == 40 and created["progress"] == 0, created
    seen = []
    deadline = time.monotonic() + 120
    while True:
        job = client.get(f"/v1/videos/{created['id']}").json()
        seen.append((job["progress"], job["step"], job["steps"]))
        if job["status"] not in ("queued", "in_progress"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.01)
    assert job["status"] == "completed", job
    assert seen[-1] == (100, 40, 40)
    assert _monotonic([p for p, _, _ in seen]) and _monotonic([k for _, k, _ in seen]), seen
    assert all(n == 40 for _, _, n in seen), seen
    assert all(p < 100 for p, _, _ in seen[:-1]), seen  # 100 only once the result is saved
    assert any(0 < k < 40 for _, k, _ in seen), f"never saw a step in between: {seen}"
    assert all(p == min(99, 100 * k // 40) for p, k, _ in seen[:-1] if k), seen
    listed = {v["id"]: v for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]}
    assert (listed[job["id"]]["step"], listed[job["id"]]["steps"]) == (40, 40)


def test_events_stream_progress_until_done(server, client, monkeypatch):
    import cosmos3.serve.videos as videos

    # The stream looks at the job every EVENTS_POLL_S; at 0.2 s a loaded machine ran a 30-step tiny job between two
    # looks. Polling 20x faster over a 5x longer job leaves a few hundred looks inside it.
    monkeypatch.setattr(videos, "EVENTS_POLL_S", 0.01)
    created = client.post("/v1/videos", data={**SMALL, "num_inference_steps": "150"}).json()
    events = _events(server, created["id"])
    names = [n for n, _ in events]
    assert names[-1] == "done" and set(names[:-1]) <= {"progress"}, names
    final = events[-1][1]
    assert final["status"] == "completed" and final["progress"] == 100 and final["step"] == 150, final["error"]
    progress = [b["progress"] for _, b in events]
    steps = [b["step"] for _, b in events]
    assert _monotonic(progress) and _monotonic(steps), events
    assert len(events) >= 3 and any(0 < b["progress"] < 100 for _, b in events), progress
    assert len({(b["status"], b["progress"], b["step"]) for _, b in events[:-1]}) == len(events) - 1  # changes only
    # a finished job: one 'done' event and the stream ends at once
    started = time.monotonic()
    again = _events(server, created["id"], timeout=10)
    assert [n for n, _ in again] == ["done"] and again[0][1]["status"] == "completed"
    assert time.monotonic() - started < 5


def test_events_stream_ends_on_cancel(server, client):
    created = client.post("/v1/videos", data={**SMALL, "num_inference_steps": "1000"}).json()
    got: list = []
    reader = threading.Thread(target=_events, args=(server, created["id"]), kwargs={"out": got}, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any(b["step"] >= 2 for _, b in got):  # the stream itself shows the job running
        assert time.monotonic() < deadline and reader.is_alive(), got[-3:]
        time.sleep(0.02)
    assert client.post(f"/v1/videos/{created['id']}/cancel").json()["status"] == "cancelled"
    reader.join(20)
    assert not reader.is_alive(), "the event stream did not close after the cancel"
    assert got[-1][0] == "done" and got[-1][1]["status"] == "cancelled", got[-3:]
    assert all(n == "progress" for n, _ in got[:-1]) and got[-2][1]["status"] == "in_progress"


def test_unknown_job_is_404(client):
    assert_error(client.get("/v1/videos/video_nope"), 404, "not_found", "video_id")
    assert_error(client.get("/v1/videos/video_nope/events"), 404, "not_found", "video_id")
    assert_error(client.get("/v1/videos/video_nope/events", params={"x": "1"}), 400, "unknown_field")


def test_worker_counts_steps_over_every_sampling_run():
    """A forward-dynamics rollout samples chunk after chunk, each calling back from step 1: progress still only
    rises, and `steps` is every run's steps together."""
    from cosmos3.serve.queues import GenerationQueue, GenTask

    class TwoRuns:
        def generate(self, progress, callback, **kw):
            for _ in range(2):
                for i in range(5):
                    callback(i + 1, 5)
            return "ok"

    queue = GenerationQueue(TwoRuns(), max_queue=2)
    queue.start()
    seen = []
    task = GenTask("t", {}, runs=2, on_progress=lambda p, k, n: seen.append((p, k, n)))
    queue.submit(task)
    assert task.future.result(timeout=10) == "ok"
    queue.stop()
    assert [k for _, k, _ in seen] == list(range(1, 11)) and {n for _, _, n in seen} == {10}, seen
    assert [p for p, _, _ in seen] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 99], seen
    assert (task.progress, task.step, task.steps) == (100, 10, 10)


def test_job_store_adds_step_columns_to_an_old_database(tmp_path):
    from cosmos3.serve.jobs import JobStore

    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, completed_at INTEGER, "
               "status TEXT NOT NULL, progress INTEGER NOT NULL DEFAULT 0, model TEXT, request TEXT NOT NULL, "
               "result TEXT, error TEXT)")
    db.execute("INSERT INTO jobs (id, created_at, status, request) VALUES ('video_old', 1, 'completed', '{}')")
    db.commit()
    db.close()
    store = JobStore(tmp_path)
    try:
        assert store.get("video_old")["step"] == 0 and store.get("video_old")["steps"] is None
        store.create("video_new", {}, "m", steps=8)
        assert store.set_running("video_new")
        store.set_progress("video_new", 50, 4, 8)
        assert (store.get("video_new")["progress"], store.get("video_new")["step"]) == (50, 4)
        assert store.finish("video_new", "completed", result={})
        assert (store.get("video_new")["progress"], store.get("video_new")["step"]) == (100, 8)
    finally:
        store.close()
