"""The playground page at `/` over plain HTTP: its headers (a strict Content-Security-Policy, no inline script), its
static files, and the limits it checks requests against. The page in a real browser: test_playground_browser.py."""

from __future__ import annotations

import re

from serve_support import assert_error


def test_page_has_a_strict_csp_and_no_inline_script(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'self'"] and directives["script-src"] == ["'self'"]
    assert set(directives["media-src"]) == {"'self'", "blob:", "data:"}
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", r.text, re.S)
    assert scripts and all('src="/playground/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", r.text)  # no inline event handlers either
    assert "http://" not in r.text and "https://" not in r.text  # nothing external (no CDN)


def test_static_files_and_nothing_else(client):
    for name in ("app.js", "generate.js", "jobs.js"):
        js = client.get(f"/playground/static/{name}")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text and "eval(" not in js.text
        assert "outerHTML" not in js.text and "document.write" not in js.text
        assert not re.search(r"[?&][a-z_]*key=", js.text, re.I)  # the key travels in a header only, never in a query
    assert client.get("/playground/static/style.css").headers["content-type"].startswith("text/css")
    for name in ("index.html", "..%2Fapp.py", "missing.js"):
        assert_error(client.get(f"/playground/static/{name}"), 404)
    assert "/" not in client.get("/openapi.json").json()["paths"]  # the page is not part of the API document


def test_config_reports_this_servers_limits(server, client):
    cfg = client.get("/playground/config").json()
    sc = server.state.config
    assert cfg["model"] == server.state.model_name and cfg["api_key_required"] is False
    assert cfg["generator"] is True and cfg["reasoner"] is True
    L = cfg["limits"]
    assert (L["max_pixels"], L["max_frames"], L["max_upload_bytes"]) == (sc.max_pixels, sc.max_frames,
                                                                          sc.max_upload_bytes)
    assert L["steps"] == [1, min(1000, sc.max_steps)] and "320x192" in L["sizes"]
    assert {e["name"] for e in cfg["embodiments"]} >= {"droid_lerobot", "policy_droid"}
    assert cfg["action_modes"] == ["policy", "forward_dynamics", "inverse_dynamics"]
