"""The playground page in a real browser: Debian's chromium driven headless by Selenium (chromium-driver) against a
live server on 127.0.0.1 with a tiny random checkpoint (one with a sound tokenizer for the video-with-sound test). A
screenshot of each step goes to the test's tmp folder.

Without the browser these tests skip with one line saying how to install it."""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from serve_support import LiveServer, wait_for
from seeding import fresh_seed

INSTALL = "chromium not found: apt-get install chromium chromium-driver"


def _browser_paths() -> tuple[str, str] | None:
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


if _browser_paths() is None:  # one line for the whole module, and the rest of the suite runs
    pytest.skip(INSTALL, allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    paths = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900", "--autoplay-policy=no-user-gesture-required",
                "--enable-blink-features=AudioVideoTracks"):  # HTMLMediaElement.audioTracks, for the sound test
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=opts)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


class Page:
    """The page open at `url`, with a folder for screenshots."""

    def __init__(self, driver, url: str, shots):
        self.d, self.url, self.shots, self.n = driver, url, shots, 0
        driver.get(url + "/")
        self.wait(lambda: driver.execute_script("return document.body.dataset.ready") == "1", "page ready")

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, css)

    def wait(self, cond, what: str, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                self.shot("timeout")
                raise AssertionError(f"timed out waiting for {what}; console: {self.d.get_log('browser')[-5:]}")
            time.sleep(0.05)

    def shot(self, name: str):
        self.n += 1
        path = self.shots / f"{self.n:02d}_{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def fill(self, css: str, value) -> None:
        el = self.find(css)
        el.clear()
        el.send_keys(str(value))

    def tab(self, name: str) -> None:
        self.find(f"#tab-{name}").click()

    def no_alert(self) -> bool:
        from selenium.common.exceptions import NoAlertPresentException

        try:
            self.d.switch_to.alert
        except NoAlertPresentException:
            return True
        return False

    def card(self, job_id: str):
        return f'.job[data-id="{job_id}"]'

    def drop(self, css: str, name: str, data: bytes | None = None, mime: str = "", size: int = 0) -> None:
        """Drop a file on the element at `css` as a user's drag would: dragenter, dragover and drop events carrying
        it in their DataTransfer. Without `data`: a PNG signature followed by zeros, `size` bytes in all."""
        self.js("const [sel, name, b64, type, size] = arguments;"
                "let bytes; if (b64 !== null) { const bin = atob(b64); bytes = new Uint8Array(bin.length);"
                "  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i); }"
                "else { bytes = new Uint8Array(size); bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]); }"
                "const dt = new DataTransfer(); dt.items.add(new File([bytes], name, {type}));"
                "const target = document.querySelector(sel);"
                "for (const t of ['dragenter', 'dragover', 'drop'])"
                "  target.dispatchEvent(new DragEvent(t, {dataTransfer: dt, bubbles: true, cancelable: true}));",
                css, name, None if data is None else base64.b64encode(data).decode(), mime, size)

    def field_text(self, css: str, part: str) -> str:
        return self.js("const n = document.querySelector(arguments[0]).closest('.field').querySelector(arguments[1]);"
                       "return n.textContent", css, part)

    def newest_job_id(self, before: set[str]) -> str:
        return self.wait(lambda: next((i for i in self.js(
            "return [...document.querySelectorAll('.job')].map(n => n.dataset.id)") if i not in before), None),
            "the new job's card")


def _config(checkpoint, storage, **over):
    from cosmos3.serve import ServerConfig

    # the shared server's limits, with room for the upsampling instruction (about 530 tokens of the tiny tokenizer)
    # and a small input-pixel limit that a test image can exceed
    kw = dict(checkpoint=str(checkpoint), storage=storage, max_queue=2, max_batch=4, max_model_len=1024,
              max_prompt_tokens=900, default_max_tokens=16, max_upload_bytes=2_000_000, max_pixels=320 * 256,
              max_frames=17, max_steps=1000, max_input_pixels=256 * 256)
    return ServerConfig(**{**kw, **over})


@pytest.fixture(scope="module")
def server(models, checkpoint, tmp_path_factory):
    from cosmos3.serve import create_app

    with LiveServer(create_app(_config(checkpoint, tmp_path_factory.mktemp("playground")), *models)) as live:
        yield live


@pytest.fixture
def page(browser, server, tmp_path):
    return Page(browser, server.url, tmp_path)


def _png(path) -> bytes:
    img = Image.fromarray(np.random.default_rng(4).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    img.save(path, "PNG")
    return path.read_bytes()


def _job_ids(client) -> set[str]:
    return {v["id"] for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]}


def _generate(page, **fields) -> None:
    page.tab("generate")
    for css, key in (("#gen-prompt", "prompt"), ("#gen-size", "size"), ("#gen-frames", "frames"),
                     ("#gen-steps", "steps"), ("#gen-guidance", "guidance"), ("#gen-seed", "seed"),
                     ("#gen-fps", "fps")):
        page.find(css).clear()
        if key in fields:
            page.find(css).send_keys(str(fields[key]))
    page.find("#gen-submit").click()


def test_chat_with_an_image_streams_the_answer(page, client, tmp_path):
    png = _png(tmp_path / "cube.png")
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
    before = _job_ids(client)
    _generate(page, prompt="a red block slides left", size="64x64", frames=9, steps=30, guidance=3, seed=7)
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
    before = _job_ids(client)
    _generate(page, prompt="a long one", size="64x64", frames=5, steps=1000, guidance=3)
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
    before = _job_ids(client)
    _generate(page, prompt=evil, size="64x64", frames=5, steps=2, guidance=3)
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
    assert scripts == [page.url + "/playground/static/app.js"]
    assert page.js("return document.querySelectorAll('.job img, .msg.user img').length") == 0
    page.shot("script_as_text")


def test_limits_are_checked_before_sending_and_api_errors_name_their_field(page, client, server):
    before = _job_ids(client)
    frames_limit = server.state.config.max_frames
    _generate(page, prompt="too long", size="64x64", frames=frames_limit + 4, steps=2)
    err = page.wait(lambda: page.js("return document.querySelector('[data-param=\"num_frames\"] .err').textContent"),
                    "the frames error")
    assert str(frames_limit) in err
    _generate(page, prompt="too big", size="1280x1280", frames=5, steps=2)
    assert "pixels" in page.wait(lambda: page.js(
        "return document.querySelector('[data-param=\"size\"] .err').textContent"), "the size error")
    assert _job_ids(client) == before  # nothing was sent
    _generate(page, prompt="odd fps", size="64x64", frames=5, steps=2, fps=13)  # only the server knows fps choices
    shown = page.wait(lambda: page.js("return document.querySelector('[data-param=\"fps\"] .err').textContent"),
                      "the API's fps error")
    api = client.post("/v1/videos", data={"prompt": "odd fps", "size": "64x64", "num_frames": "5",
                                          "num_inference_steps": "2", "fps": "13"}).json()["error"]
    assert api["param"] == "fps" and shown == api["message"]  # as the API words it, next to its field
    assert page.find("#gen-error").text == ""
    page.shot("field_error")


def _action_job(page, client, mode: str, ref, action_file=None) -> tuple[str, dict]:
    from selenium.webdriver.support.ui import Select

    before = _job_ids(client)
    page.tab("generate")
    Select(page.find("#gen-mode")).select_by_value("i2v")
    Select(page.find("#gen-action-mode")).select_by_value(mode)
    Select(page.find("#gen-embodiment")).select_by_value("droid_lerobot")
    page.fill("#gen-chunk", 4)
    page.find("#gen-ref").send_keys(str(ref))
    if action_file is not None:
        page.find("#gen-action-file").send_keys(str(action_file))
    _generate(page, prompt="pick up the cup", steps=2, size="256p")
    job_id = page.newest_job_id(before)
    page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", page.card(job_id))
              in ("completed", "failed"), "the action job", timeout=180)
    job = client.get(f"/v1/videos/{job_id}").json()
    assert job["status"] == "completed", job
    return job_id, job


def test_policy_actions_are_plotted_per_dimension(page, client, tmp_path):
    _png(tmp_path / "scene.png")
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
    _png(tmp_path / "scene.png")
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
        _generate(page, prompt="with a key", size="64x64", frames=5, steps=2, guidance=3)
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


# ---------------------------------------------------------------------------------------------------- upsampling


def test_upsample_fills_the_prompt_box_with_the_reasoners_text(page, client, tmp_path):
    short = 'a red <b>block</b> slides "left"'
    page.tab("generate")
    page.fill("#gen-prompt", short)
    page.find("#gen-upsample").click()
    page.wait(lambda: page.find("#gen-upsample-status").text.startswith(("upsampled", "the reasoner's answer")),
              "the upsampled prompt")
    page.shot("upsampled")
    shown = page.js("return document.getElementById('gen-prompt').value")
    api = client.post("/v1/prompts/upsample", json={"prompt": short}).json()  # greedy: the same answer
    expected = json.dumps(json.loads(api["prompt"]), indent=2) if api["structured"] else api["prompt"]
    assert shown == expected and shown != short
    assert page.js("return window.__pwned") is None and page.no_alert()
    # with a reference image, the reasoner sees it too
    from selenium.webdriver.support.ui import Select

    png = _png(tmp_path / "first.png")
    Select(page.find("#gen-mode")).select_by_value("i2v")
    page.find("#gen-ref").send_keys(str(tmp_path / "first.png"))
    page.wait(lambda: "image 48x48" in page.field_text("#gen-ref", ".info"), "the reference checked")
    page.fill("#gen-prompt", short)
    page.find("#gen-upsample").click()
    page.wait(lambda: page.js("return document.getElementById('gen-prompt').value") != short and
              not page.find("#gen-upsample").get_attribute("disabled"), "the upsampled prompt with the image")
    with_image = client.post("/v1/prompts/upsample", json={
        "prompt": short, "image_url": "data:image/png;base64," + base64.b64encode(png).decode()}).json()
    assert page.js("return document.getElementById('gen-prompt').value") == with_image["prompt"]


def test_upsample_errors_are_shown_next_to_the_prompt(page, client):
    page.tab("generate")
    page.find("#gen-prompt").clear()
    page.find("#gen-upsample").click()
    assert "write a short prompt" in page.field_text("#gen-prompt", ".err")
    long = "block " * 300  # the instruction and this prompt overflow --max-prompt-tokens
    page.fill("#gen-prompt", long)
    page.find("#gen-upsample").click()
    shown = page.wait(lambda: page.field_text("#gen-prompt", ".err"), "the API's error")
    api = client.post("/v1/prompts/upsample", json={"prompt": long}).json()["error"]
    assert api["param"] == "prompt" and shown == api["message"] and "tokens" in shown
    assert page.js("return document.getElementById('gen-prompt').value") == long  # the prompt is left as it was
    page.shot("upsample_error")


# ---------------------------------------------------------------------------------------------------- snippets


def test_openai_and_httpx_snippets_make_the_same_job(page, client, tmp_path):
    prompt = 'a "quoted" block\nslides \\ left'
    before = _job_ids(client)
    _generate(page, prompt=prompt, size="64x64", frames=5, steps=2, guidance=3, seed=11)
    job_id = page.newest_job_id(before)
    card = page.card(job_id)
    page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", card) == "completed",
              "the job")
    original = client.get(f"/v1/videos/{job_id}").json()
    page.find(f"{card} details.request").click()
    page.shot("snippets")
    for kind in ("openai", "python"):
        code = page.js("return document.querySelector(arguments[0] + ' pre.' + arguments[1]).textContent", card, kind)
        compile(code, f"<{kind} snippet>", "exec")  # valid Python
        assert ("from openai import OpenAI" in code and "client.videos.create(" in code) if kind == "openai" \
            else "httpx.Client(" in code
        folder = tmp_path / kind
        folder.mkdir()
        ids = _job_ids(client)
        run = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        made = _job_ids(client) - ids
        assert len(made) == 1, made
        job = client.get(f"/v1/videos/{made.pop()}").json()
        assert job["status"] == "completed", job
        for key in ("prompt", "size", "num_frames", "fps", "seed"):
            assert job[key] == original[key], (kind, key, job[key], original[key])
        assert (folder / "video.mp4").read_bytes()[4:8] == b"ftyp"


# ---------------------------------------------------------------------------------------------------- size


def test_resolution_and_aspect_set_the_size_checked_against_the_limits(page, client, server):
    from selenium.webdriver.support.ui import Select

    from cosmos3 import spec

    page.tab("generate")
    tier, aspect = Select(page.find("#gen-tier")), Select(page.find("#gen-aspect"))
    assert [o.get_attribute("value") for o in tier.options] == ["", *spec.RESOLUTION_TIERS, "custom"]
    assert page.find("#gen-aspect").get_attribute("disabled")  # the model's default size: no aspect to pick
    tier.select_by_value("256p")
    for name in spec.ASPECT_RATIOS:  # the release's table (DESIGN 2.7)
        aspect.select_by_value(name)
        w, h = spec.RESOLUTIONS["256p"][name]
        assert page.find("#gen-size").get_attribute("value") == f"{w}x{h}"
        assert page.field_text("#gen-size", ".err") == ""
    limit = server.state.config.max_pixels
    tier.select_by_value("480p")  # 736x544 at 4:3 (the last aspect picked was 9:16: 480x832)
    aspect.select_by_value("4:3")
    assert page.find("#gen-size").get_attribute("value") == "736x544"
    err = page.field_text("#gen-size", ".err")
    assert "736x544" in err and str(limit) in err  # shown at once, before anything is sent
    assert "above this server's limit" in Select(page.find("#gen-tier")).first_selected_option.text
    page.shot("size_over_limit")
    before = _job_ids(client)
    page.fill("#gen-prompt", "too big")
    page.find("#gen-submit").click()
    time.sleep(0.3)
    assert _job_ids(client) == before  # nothing was sent
    for typed, want in (("320x256", ("256p", "4:3")), ("64x64", ("custom", None))):
        page.fill("#gen-size", typed)
        page.js("document.getElementById('gen-size').dispatchEvent(new Event('change'))")
        assert tier.first_selected_option.get_attribute("value") == want[0]
        if want[1]:
            assert aspect.first_selected_option.get_attribute("value") == want[1]
        assert page.field_text("#gen-size", ".err") == ""
    tier.select_by_value("")
    assert page.find("#gen-size").get_attribute("value") == ""


# ---------------------------------------------------------------------------------------------------- drops


def test_dropped_files_are_checked_like_the_api_and_used(page, client, server, tmp_path):
    from selenium.webdriver.support.ui import Select

    cfg = server.state.config
    page.tab("generate")
    Select(page.find("#gen-mode")).select_by_value("i2v")
    png = _png(tmp_path / "scene.png")
    page.drop("#gen-ref-field", "scene.png", png, "image/png")
    page.wait(lambda: "scene.png · image 48x48" in page.field_text("#gen-ref", ".info"), "the dropped image")
    assert page.js("return document.getElementById('gen-ref').files[0].name") == "scene.png"
    page.shot("dropped_reference")
    side = int(cfg.max_input_pixels ** 0.5) + 16
    big = Image.fromarray(np.zeros((side, side, 3), np.uint8))
    big.save(tmp_path / "big.png")
    cases = [("notes.txt", b"just text", "text/plain", 0, "not a PNG, JPEG or WEBP image"),
             ("big.png", (tmp_path / "big.png").read_bytes(), "image/png", 0, f"above this server's limit of {cfg.max_input_pixels}"),
             ("huge.png", None, "image/png", cfg.max_upload_bytes + 1, "above this server's limit of")]
    for name, data, mime, size, words in cases:
        page.drop("#gen-ref-field", name, data, mime, size)
        err = page.wait(lambda: page.field_text("#gen-ref", ".err"), f"the error for {name}")
        assert name in err and words in err, err
        body = data if data is not None else b"\x89PNG\r\n\x1a\n" + bytes(size - 8)
        api = client.post("/v1/videos", data={"prompt": "x", "size": "64x64", "num_frames": "5",
                                              "num_inference_steps": "1"},
                          files={"input_reference": (name, body, mime)})
        assert api.status_code in (400, 413), api.text  # the API refuses it too
    page.shot("dropped_refused")
    # an action file and a picture dropped for forward dynamics: the job is made from them
    Select(page.find("#gen-action-mode")).select_by_value("forward_dynamics")
    Select(page.find("#gen-embodiment")).select_by_value("droid_lerobot")
    page.drop("#gen-ref-field", "scene.png", png, "image/png")
    page.drop("#gen-action-field", "bad.json", b"[[1, 2], [3", "application/json")
    assert "not valid JSON" in page.wait(lambda: page.field_text("#gen-action-file", ".err"), "the JSON error")
    page.drop("#gen-action-field", "narrow.json", json.dumps([[0.0] * 7] * 4).encode(), "application/json")
    assert "droid_lerobot actions have 10" in page.wait(lambda: page.field_text("#gen-action-file", ".err"),
                                                        "the width error")
    rows = np.random.default_rng(fresh_seed()).uniform(-1, 1, (4, 10)).round(4).tolist()
    page.drop("#gen-action-field", "moves.json", json.dumps(rows).encode(), "application/json")
    page.wait(lambda: "moves.json · 4 steps x 10 values" in page.field_text("#gen-action-file", ".info"),
              "the dropped actions")
    page.fill("#gen-chunk", 4)
    before = _job_ids(client)
    _generate(page, prompt="roll it out", steps=2, size="256p")
    job_id = page.newest_job_id(before)
    page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", page.card(job_id))
              in ("completed", "failed"), "the dropped files' job", timeout=180)
    job = client.get(f"/v1/videos/{job_id}").json()
    assert job["status"] == "completed" and job["num_frames"] == 5, job  # forward dynamics: 4 actions + 1 frame


def test_chat_takes_dropped_images_and_refuses_other_files(page, tmp_path):
    png = _png(tmp_path / "drop.png")
    page.drop("#panel-chat", "drop.png", png, "image/png")
    page.wait(lambda: "drop.png" in page.find("#chat-attachments").text, "the dropped attachment")
    page.drop("#panel-chat", "notes.txt", b"text", "text/plain")
    err = page.wait(lambda: page.find("#chat-error").text, "the refusal")
    assert "notes.txt" in err and "not a PNG, JPEG or WEBP image or an MP4 video" in err
    assert "notes.txt" not in page.find("#chat-attachments").text
    page.shot("chat_drop")
    page.find("#chat-clear").click()


# ---------------------------------------------------------------------------------------------------- sound


@pytest.fixture(scope="module")
def sound_server(tmp_path_factory):
    """A tiny random checkpoint with a sound tokenizer (the shared one has none), serving generation only."""
    import torch

    from oracle import build_reference_pipeline, random_config
    from cosmos3.serve import create_app
    from cosmos3.serve.runtime import load_models

    seed = fresh_seed("sound checkpoint")
    root = tmp_path_factory.mktemp("sound_ckpt")
    cfg = random_config("qwen", random.Random(seed), sound=True).replace(vocab_size=300, num_embodiment_domains=32)
    build_reference_pipeline(root, cfg, torch.Generator().manual_seed(seed), sound=True)
    generator, reasoner = load_models(root, "cpu")
    with LiveServer(create_app(_config(root, tmp_path_factory.mktemp("sound_jobs")), generator=generator,
                               reasoner=reasoner)) as live:
        yield live


def test_a_video_with_sound_plays_with_its_audio_track(browser, sound_server, tmp_path):
    page = Page(browser, sound_server.url, tmp_path)
    with httpx.Client(base_url=sound_server.url, timeout=60) as client:
        heard = {}
        for sound in (True, False):
            page.tab("generate")
            if page.find("#gen-sound").is_selected() != sound:
                page.find("#gen-sound").click()
            before = _job_ids(client)
            _generate(page, prompt="a bell rings", size="64x64", frames=9, steps=2, guidance=3, fps=16)
            job_id = page.newest_job_id(before)
            card = page.card(job_id)
            page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", card)
                      in ("completed", "failed"), "the job")
            job = client.get(f"/v1/videos/{job_id}").json()
            assert job["status"] == "completed", job
            page.wait(lambda: page.js("const v = document.querySelector(arguments[0] + ' video');"
                                      "return v && v.readyState >= 1", card), "the video's metadata")
            page.js("const v = document.querySelector(arguments[0] + ' video'); v.muted = true; v.play()", card)
            page.wait(lambda: page.js("const v = document.querySelector(arguments[0] + ' video');"
                                      "return v.ended || v.currentTime >= v.duration * 0.9", card),
                      "the video to play through", timeout=30)
            heard[sound] = page.js(
                "const v = document.querySelector(arguments[0] + ' video');"
                "return {ready: v.readyState, duration: v.duration, tracks: v.audioTracks.length,"
                "        audio_bytes: v.webkitAudioDecodedByteCount, video_bytes: v.webkitVideoDecodedByteCount}", card)
            assert abs(heard[sound]["duration"] - 9 / 16) < 0.1, heard
            page.shot("sound_on" if sound else "sound_off")
    # the one with sound has an audio track that chromium decoded while it played (muted); the other has none
    assert heard[True]["ready"] >= 2 and heard[True]["tracks"] == 1 and heard[True]["audio_bytes"] > 0, heard
    assert heard[False]["tracks"] == 0 and heard[False]["audio_bytes"] == 0, heard
    assert heard[False]["video_bytes"] > 0
