"""Remote media through MediaPolicy, against an HTTP server on 127.0.0.1 (this machine has no internet): fetched
only when enabled, byte for byte, bounded in size, and every failure a 4xx naming the URL."""

from __future__ import annotations

import base64
import http.server
import io
import threading

import numpy as np
import pytest
from PIL import Image

from cosmos3.serve.errors import APIError
from cosmos3.serve.media_policy import MediaPolicy
from seeding import fresh_seed


@pytest.fixture(scope="module")
def site():
    rng = np.random.default_rng(fresh_seed("serve/test_remote_media.py::site"))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(buf, format="PNG")
    files = {"/frame.png": buf.getvalue(), "/big.bin": rng.bytes(300_000)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/frame.png")
                self.end_headers()
                return
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    httpd.shutdown()


def test_fetch_when_enabled_gives_the_same_bytes(site):
    url, files = site
    policy = MediaPolicy([], allow_remote=True)
    assert policy.fetch(url + "/frame.png", "image_url") == files["/frame.png"]
    assert policy.fetch(url + "/moved", "image_url") == files["/frame.png"]  # redirects followed
    uri = policy.resolve_url(url + "/frame.png", "messages[0].content[0].image_url", "image")
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == files["/frame.png"]


@pytest.mark.parametrize("case", ["disabled", "too_large", "missing", "unreachable", "scheme"])
def test_remote_failures_are_specific_4xx(case, site):
    url, _ = site
    policy = MediaPolicy([], allow_remote=case != "disabled", max_remote_bytes=100_000, remote_timeout_s=5)
    target = {"disabled": url + "/frame.png", "too_large": url + "/big.bin", "missing": url + "/nothing.png",
              "unreachable": "http://127.0.0.1:1/x.png", "scheme": "ftp://127.0.0.1/x.png"}[case]
    with pytest.raises(APIError) as err:
        policy.resolve_url(target, "image_url", "image")
    status, code = {"disabled": (400, "remote_media_disabled"), "too_large": (413, "media_too_large"),
                    "missing": (400, "remote_media_error"), "unreachable": (400, "remote_media_error"),
                    "scheme": (400, "invalid_url")}[case]
    assert (err.value.status, err.value.code, err.value.param) == (status, code, "image_url")
    if case != "scheme":
        assert target in str(err.value) or "remote media URLs are refused" in str(err.value)
