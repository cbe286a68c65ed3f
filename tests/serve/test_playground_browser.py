"""The playground page in a real browser: Debian's chromium driven headless by Selenium (chromium-driver) against a
live server on 127.0.0.1 with a tiny random checkpoint (playground_support.py): chat, jobs, limits, actions, the API
key. The Generate tab's tools: test_playground_browser_generate.py. A screenshot of each step goes to the test's tmp
folder.

Without the browser these tests skip with one line saying how to install it."""

from __future__ import annotations

import base64
import json
import time

import httpx
import numpy as np
import pytest

from playground_support import INSTALL, browser_paths
from serve_support import LiveServer, wait_for

if browser_paths() is None:  # one line for the whole module, and the rest of the suite runs
    pytest.skip(INSTALL, allow_module_level=True)

import playground_support as support  # noqa: E402
from playground_support import Page, generate, job_ids, write_png  # noqa: E402

browser, page, server = support.browser, support.page, support.server  # the fixtures these tests use


def test_chat_with_an_image_streams_the_answer(page, client, tmp_path):
    png = write_png(tmp_path / "cube.png")
    assert not page.find("#keybar").is_displayed()  # this server has no API key
    page.find("#chat-file").send_keys(str(tmp_path / "cube.png"))
    page.wait(lambda: "cube.png" in page.find("#chat-attachments").text, "the attachment")
    page.fill("#chat-input", "What is on the table?")
    page.find("#panel-chat details.settings").click()
    for css, value in (("#chat-max-tokens", 12), ("#chat-temperature", 0), ("#chat-seed", 3)):
        page.fill(css, value)
    page.shot("chat_ready")
    # every text the answer shows as the stream arrives (a text node per update: textContent replaces it)
    page.js("window.__shown = []; new MutationObserver(rs => { for (const r of rs) if (r.target.classList && "
            "r.target.classList.contains('answer')) for (const n of r.addedNodes) window.__shown.push(n.data); })"
            ".observe(document.getElementById('chat-log'), {subtree: true, childList: true});")
    page.find("#chat-send").click()
    page.wait(lambda: page.js("return !!document.querySelector('.msg.assistant.done')"), "the answer")
    page.shot("chat_answer")
    shown = page.js("return document.querySelector('.msg.assistant .answer').textContent")
    assert page.find("#chat-error").text == ""
    assert page.js("return document.querySelector('.msg.user img').src").startswith("data:image/png;base64,")
    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
        {"type": "text", "text": "What is on the table?"}]}], "max_tokens": 12, "temperature": 0, "seed": 3}
    out = client.post("/v1/chat/completions", json=body).json()
    assert out["usage"]["completion_tokens"] >= 1
    assert shown == out["choices"][0]["message"]["content"]  # greedy: the page shows the API's answer
    prefixes, text = [], ""
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if delta:
                    text += delta
                    prefixes.append(text)
    assert page.js("return window.__shown") == prefixes  # shown piece by piece, as the stream arrived
    print(f"answer streamed in {len(prefixes)} pieces")


def test_think_toggle_folds_the_reasoning_apart(page):
    page.find("#chat-think").click()
    page.fill("#chat-input", "Think first.")
    page.find("#panel-chat details.settings").click()
    page.fill("#chat-max-tokens", 16)
    page.find("#chat-send").click()
    page.wait(lambda: page.js("return !!document.querySelector('.msg.assistant.done')"), "the answer")
    fold = page.js("const d = document.querySelector('.msg.assistant details.reasoning');"
                   "return d && {open: d.open, summary: d.querySelector('summary').textContent}")
    assert fold == {"open": False, "summary": "reasoning"}
    page.shot("chat_think")


def test_video_job_progress_reaches_100_and_plays(page, client):
    before = job_ids(client)
    generate(page, prompt="a red block slides left", size="64x64", frames=9, steps=30, guidance=3, seed=7)
    job_id = page.newest_job_id(before)
    card = page.card(job_id)
    seen = []
    shot_mid = False

    def finished():
        nonlocal shot_mid
        state = page.js("const c = document.querySelector(arguments[0]); return c && "
                        "[c.dataset.status, c.querySelector('progress').value, c.querySelector('.steps').textContent]",
                        card)
        if state:
            seen.append(state)
            if state[0] == "in_progress" and 0 < state[1] < 100 and not shot_mid:
                shot_mid = True
                page.shot("job_progress")
        return state and state[0] in ("completed", "failed", "cancelled")

    page.wait(finished, "the job to finish")
    assert seen[-1][0] == "completed", seen[-3:]
    assert seen[-1][1] == 100 and seen[-1][2] == "100% · step 30 of 30", seen[-1]
    values = [v for _, v, _ in seen]
    assert all(a <= b for a, b in zip(values, values[1:])), values
    assert any(0 < v < 100 for v in values), f"never saw progress in between: {sorted(set(values))}"
    video = page.wait(lambda: page.js(
        "const v = document.querySelector(arguments[0] + ' video');"
        "return v && v.readyState >= 1 && {ready: v.readyState, duration: v.duration, src: v.src, "
        "controls: v.controls}", card), "the video's metadata")
    assert video["controls"] and video["src"].startswith("blob:")
    job = client.get(f"/v1/videos/{job_id}").json()
    assert abs(video["duration"] - job["num_frames"] / job["fps"]) < 0.2, (video, job)
    page.js("document.querySelector(arguments[0] + ' video').play()", card)
    page.wait(lambda: page.js("return document.querySelector(arguments[0] + ' video').currentTime > 0", card),
              "the video to play", timeout=20)
    links = page.js("return [...document.querySelectorAll(arguments[0] + ' a[download]')].map(a => a.download)", card)
    assert f"{job_id}.mp4" in links
    curl = page.js("return document.querySelector(arguments[0] + ' pre.curl').textContent", card)
    assert f"{page.url}/v1/videos" in curl and "-F 'num_inference_steps=30'" in curl and "-F 'seed=7'" in curl
    assert "httpx" in page.js("return document.querySelector(arguments[0] + ' pre.python').textContent", card)
    page.find(f"{card} details.request").click()
    page.shot("job_done")


def test_cancel_a_running_job(page, client):
    before = job_ids(client)
    generate(page, prompt="a long one", size="64x64", frames=5, steps=1000, guidance=3)
    job_id = page.newest_job_id(before)
    card = page.card(job_id)
    page.wait(lambda: page.js("const c = document.querySelector(arguments[0]);"
                              "return c.dataset.status === 'in_progress' && c.querySelector('progress').value >= 1",
                              card), "the job to run")
    page.shot("job_running")
    page.find(f"{card} button.cancel").click()
    page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", card) == "cancelled",
              "the card to say cancelled")
    assert page.js("return document.querySelector(arguments[0] + ' button.cancel').disabled", card)
    assert wait_for(client, job_id, ("cancelled",))["status"] == "cancelled"
    page.shot("job_cancelled")


def test_a_prompt_with_script_is_shown_as_text(page, client):
    evil = '<script>window.__pwned = 1; alert(1)</script><img src=x onerror="window.__pwned = 2; alert(2)">'
    before = job_ids(client)
    generate(page, prompt=evil, size="64x64", frames=5, steps=2, guidance=3)
    job_id = page.newest_job_id(before)
    page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", page.card(job_id))
              in ("completed", "failed"), "the job")
    page.tab("chat")
    page.fill("#chat-input", evil)
    page.find("#chat-send").click()
    page.wait(lambda: page.js("return !!document.querySelector('.msg.assistant.done')"), "the answer")
    page.tab("jobs")
    page.wait(lambda: page.js("return !!document.querySelector(arguments[0])", page.card(job_id)), "the card")
    time.sleep(0.5)  # an injected handler would have fired by now
    assert page.no_alert()
    assert page.js("return window.__pwned") is None
    assert page.js("return document.querySelector(arguments[0] + ' .prompt').textContent", page.card(job_id)) == evil
    assert page.js("return [...document.querySelectorAll('.msg.user')].pop().textContent").endswith(evil)
    scripts = page.js("return [...document.scripts].map(s => s.src)")
    assert scripts == [f"{page.url}/playground/static/{name}" for name in ("app.js", "generate.js", "jobs.js")]
    assert page.js("return document.querySelectorAll('.job img, .msg.user img').length") == 0
    page.shot("script_as_text")


def test_limits_are_checked_before_sending_and_api_errors_name_their_field(page, client, server):
    before = job_ids(client)
    frames_limit = server.state.config.max_frames
    generate(page, prompt="too long", size="64x64", frames=frames_limit + 4, steps=2)
    err = page.wait(lambda: page.js("return document.querySelector('[data-param=\"num_frames\"] .err').textContent"),
                    "the frames error")
    assert str(frames_limit) in err
    generate(page, prompt="too big", size="1280x1280", frames=5, steps=2)
    assert "pixels" in page.wait(lambda: page.js(
        "return document.querySelector('[data-param=\"size\"] .err').textContent"), "the size error")
    assert job_ids(client) == before  # nothing was sent
    generate(page, prompt="odd fps", size="64x64", frames=5, steps=2, fps=13)  # only the server knows fps choices
    shown = page.wait(lambda: page.js("return document.querySelector('[data-param=\"fps\"] .err').textContent"),
                      "the API's fps error")
    api = client.post("/v1/videos", data={"prompt": "odd fps", "size": "64x64", "num_frames": "5",
                                          "num_inference_steps": "2", "fps": "13"}).json()["error"]
    assert api["param"] == "fps" and shown == api["message"]  # as the API words it, next to its field
    assert page.find("#gen-error").text == ""
    page.shot("field_error")


def _action_job(page, client, mode: str, ref, action_file=None) -> tuple[str, dict]:
    from selenium.webdriver.support.ui import Select

    before = job_ids(client)
    page.tab("generate")
    Select(page.find("#gen-mode")).select_by_value("i2v")
    Select(page.find("#gen-action-mode")).select_by_value(mode)
    Select(page.find("#gen-embodiment")).select_by_value("droid_lerobot")
    page.fill("#gen-chunk", 4)
    page.find("#gen-ref").send_keys(str(ref))
    if action_file is not None:
        page.find("#gen-action-file").send_keys(str(action_file))
    generate(page, prompt="pick up the cup", steps=2, size="256p")
    job_id = page.newest_job_id(before)
    page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", page.card(job_id))
              in ("completed", "failed"), "the action job", timeout=180)
    job = client.get(f"/v1/videos/{job_id}").json()
    assert job["status"] == "completed", job
    return job_id, job


def test_policy_actions_are_plotted_per_dimension(page, client, tmp_path):
    write_png(tmp_path / "scene.png")
    job_id, job = _action_job(page, client, "policy", tmp_path / "scene.png")
    card = page.card(job_id)
    plots = page.wait(lambda: page.js("return document.querySelectorAll(arguments[0] + ' svg.action-plot polyline')"
                                      ".length", card), "the plots")
    assert job["action"]["shape"] == [4, 10] and plots == job["action"]["raw_action_dim"] == 10
    for d in (0, 9):  # each plot: one point per action step, its own dimension's values
        points = page.js("return [...document.querySelectorAll(arguments[0] + ' svg.action-plot polyline')][arguments[1]]"
                         ".getAttribute('points').split(' ').map(p => Number(p.split(',')[1]))", card, d)
        ys = np.asarray(job["action"]["data"])[:, d]
        assert len(points) == 4
        if np.ptp(ys) > 1e-6:  # higher values are drawn higher (smaller y)
            assert np.argmax(ys) == np.argmin(points) and np.argmin(ys) == np.argmax(points), (ys, points)
    links = page.wait(lambda: (lambda names: len(names) == 2 and names)(page.js(
        "return [...document.querySelectorAll(arguments[0] + ' a[download]')].map(a => a.download)", card)),
        "the download links")
    assert sorted(links) == sorted([f"{job_id}.action.json", f"{job_id}.mp4"])
    page.shot("actions")


def test_forward_dynamics_from_an_uploaded_action_file(page, client, tmp_path):
    write_png(tmp_path / "scene.png")
    (tmp_path / "actions.json").write_text(json.dumps(np.zeros((4, 10)).tolist()))
    job_id, job = _action_job(page, client, "forward_dynamics", tmp_path / "scene.png", tmp_path / "actions.json")
    assert job["num_frames"] == 5
    page.wait(lambda: page.js("const v = document.querySelector(arguments[0] + ' video');"
                              "return v && v.readyState >= 1", page.card(job_id)), "the rollout's video")
    page.shot("forward_dynamics")


def test_api_key_is_asked_for_and_sent_as_a_header(browser, models, checkpoint, tmp_path_factory, tmp_path):
    from cosmos3.serve import ServerConfig, create_app

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path_factory.mktemp("keyed"), api_key="s3cret-key",
                          max_pixels=320 * 256, max_frames=17, default_max_tokens=8, max_model_len=512)
    generator, reasoner = models
    with LiveServer(create_app(config, generator=generator, reasoner=reasoner)) as live:
        page = Page(browser, live.url, tmp_path)
        page.js("sessionStorage.clear()")
        page.d.get(live.url + "/")
        page.wait(lambda: page.js("return document.body.dataset.ready") == "1", "page ready")
        assert page.find("#keybar").is_displayed()
        page.tab("jobs")
        page.wait(lambda: "API key" in page.find("#jobs-error").text, "the 401 shown")
        page.shot("key_asked")
        page.fill("#api-key", "s3cret-key")
        page.find("#api-key-save").click()
        page.wait(lambda: page.find("#jobs-error").text == "" and page.js(
            "return document.querySelector('#jobs-list').textContent").startswith("No jobs"), "the job list")
        generate(page, prompt="with a key", size="64x64", frames=5, steps=2, guidance=3)
        job_id = page.newest_job_id(set())
        page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", page.card(job_id))
                  == "completed", "the keyed job")
        page.wait(lambda: page.js("const v = document.querySelector(arguments[0] + ' video');"
                                  "return v && v.readyState >= 1", page.card(job_id)), "the keyed video")
        urls = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and not any("s3cret" in u for u in urls + [page.d.current_url])
        assert page.js("return sessionStorage.getItem('cosmos3.apiKey')") == "s3cret-key"
        assert page.js("return localStorage.length") == 0
        assert page.find("#api-key").get_attribute("value") == ""  # not left in the field
        with httpx.Client(base_url=live.url) as c:
            assert c.get(f"/v1/videos/{job_id}").status_code == 401
        page.shot("key_used")
        page.js("sessionStorage.clear()")


def test_chat_takes_dropped_images_and_refuses_other_files(page, tmp_path):
    png = write_png(tmp_path / "drop.png")
    page.drop("#panel-chat", "drop.png", png, "image/png")
    page.wait(lambda: "drop.png" in page.find("#chat-attachments").text, "the dropped attachment")
    page.drop("#panel-chat", "notes.txt", b"text", "text/plain")
    err = page.wait(lambda: page.find("#chat-error").text, "the refusal")
    assert "notes.txt" in err and "not a PNG, JPEG or WEBP image or an MP4 video" in err
    assert "notes.txt" not in page.find("#chat-attachments").text
    page.shot("chat_drop")
    page.find("#chat-clear").click()
