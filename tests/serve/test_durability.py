"""Durable jobs: a server (a subprocess) killed with SIGKILL mid-job and started again on the same storage (in this
process) still lists and serves its completed jobs, and reports the interrupted ones as failed with the reason."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serve_support import LiveServer, wait_for
from cosmos3.serve import ServerConfig, create_app

SMALL = {"prompt": "a block", "size": "64x64", "num_frames": "5", "num_inference_steps": "2"}


def _start(checkpoint, storage, log):
    """The server on port 0 (the OS picks a free one, no close-then-bind race); its port is read back from uvicorn's
    start-up line in the log."""
    cmd = [sys.executable, "-m", "cosmos3.serve", "--checkpoint", str(checkpoint), "--storage", str(storage),
           "--host", "127.0.0.1", "--port", "0", "--max-pixels", "16384", "--max-model-len", "256",
           "--max-steps", "1000", "--log-level", "info"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while (found := re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", Path(log.name).read_bytes())) is None:
        assert proc.poll() is None, "server exited during start-up: " + Path(log.name).read_text(errors="replace")
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)
    url = f"http://127.0.0.1:{int(found.group(1))}"
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    return proc, url


def test_restart_after_kill(checkpoint, models, tmp_path):
    storage = tmp_path / "storage"
    log = open(tmp_path / "server.log", "wb")
    proc, url = _start(checkpoint, storage, log)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            done = c.post("/v1/videos", data=SMALL).json()
            assert wait_for(c, done["id"], ("completed", "failed"))["status"] == "completed"
            running = c.post("/v1/videos", data={**SMALL, "num_inference_steps": "1000"}).json()
            wait_for(c, running["id"], ("in_progress",))
            queued = c.post("/v1/videos", data=SMALL).json()
            original = c.get(f"/v1/videos/{done['id']}/content").content
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    log.close()
    config = ServerConfig(checkpoint=str(checkpoint), storage=storage, max_pixels=16384)
    with LiveServer(create_app(config, *models)) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        ids = [v["id"] for v in c.get("/v1/videos").json()["data"]]
        assert {done["id"], running["id"], queued["id"]} <= set(ids)
        assert c.get(f"/v1/videos/{done['id']}").json()["status"] == "completed"
        assert c.get(f"/v1/videos/{done['id']}/content").content == original
        for job_id in (running["id"], queued["id"]):
            job = c.get(f"/v1/videos/{job_id}").json()
            assert job["status"] == "failed" and job["error"]["code"] == "interrupted", job
        assert not [p for p in storage.rglob("*") if ".tmp" in p.name]  # no half-written files left
        again = c.post("/v1/videos", data=SMALL).json()  # and the restarted server works
        assert wait_for(c, again["id"], ("completed", "failed"))["status"] == "completed"
