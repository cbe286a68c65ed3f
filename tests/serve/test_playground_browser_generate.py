"""The playground's Generate tab in a real browser (headless chromium, see playground_support.py): prompt upsampling,
the request as openai / httpx code that runs, the size selectors, dropped files checked like the API, and a video with
sound that plays with its audio track. A screenshot of each step goes to the test's tmp folder."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from playground_support import INSTALL, browser_paths
from seeding import fresh_seed
from serve_support import LiveServer

if browser_paths() is None:  # one line for the whole module, and the rest of the suite runs
    pytest.skip(INSTALL, allow_module_level=True)

import playground_support as support  # noqa: E402
from playground_support import Page, generate, job_ids, playground_config, write_png  # noqa: E402

browser, page, server = support.browser, support.page, support.server  # the fixtures these tests use


# ---------------------------------------------------------------------------------------------------- upsampling


def textarea(text: str) -> str:
    """A text as a textarea's value holds it: every line break as LF (a random model's answer may hold CRs)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
    assert shown == textarea(expected) and shown != short
    assert page.js("return window.__pwned") is None and page.no_alert()
    # with a reference image, the reasoner sees it too
    from selenium.webdriver.support.ui import Select

    png = write_png(tmp_path / "first.png")
    Select(page.find("#gen-mode")).select_by_value("i2v")
    page.find("#gen-ref").send_keys(str(tmp_path / "first.png"))
    page.wait(lambda: "image 48x48" in page.field_text("#gen-ref", ".info"), "the reference checked")
    page.fill("#gen-prompt", short)
    page.find("#gen-upsample").click()
    page.wait(lambda: page.js("return document.getElementById('gen-prompt').value") != short and
              not page.find("#gen-upsample").get_attribute("disabled"), "the upsampled prompt with the image")
    with_image = client.post("/v1/prompts/upsample", json={
        "prompt": short, "image_url": "data:image/png;base64," + base64.b64encode(png).decode()}).json()
    assert page.js("return document.getElementById('gen-prompt').value") == textarea(with_image["prompt"])


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
    before = job_ids(client)
    generate(page, prompt=prompt, size="64x64", frames=5, steps=2, guidance=3, seed=11)
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
        ids = job_ids(client)
        run = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        made = job_ids(client) - ids
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
    before = job_ids(client)
    page.fill("#gen-prompt", "too big")
    page.find("#gen-submit").click()
    time.sleep(0.3)
    assert job_ids(client) == before  # nothing was sent
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
    png = write_png(tmp_path / "scene.png")
    page.drop("#gen-ref-field", "scene.png", png, "image/png")
    page.wait(lambda: "scene.png · image 48x48" in page.field_text("#gen-ref", ".info"), "the dropped image")
    assert page.js("return document.getElementById('gen-ref').files[0].name") == "scene.png"
    page.shot("dropped_reference")
    side = int(cfg.max_input_pixels ** 0.5) + 16
    big = Image.fromarray(np.zeros((side, side, 3), np.uint8))
    big.save(tmp_path / "big.png")
    cases = [("notes.txt", b"just text", "text/plain", 0, "not a PNG, JPEG or WEBP image"),
             ("big.png", (tmp_path / "big.png").read_bytes(), "image/png", 0,
              f"above this server's limit of {cfg.max_input_pixels}"),
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
    before = job_ids(client)
    generate(page, prompt="roll it out", steps=2, size="256p")
    job_id = page.newest_job_id(before)
    page.wait(lambda: page.js("return document.querySelector(arguments[0]).dataset.status", page.card(job_id))
              in ("completed", "failed"), "the dropped files' job", timeout=180)
    job = client.get(f"/v1/videos/{job_id}").json()
    assert job["status"] == "completed" and job["num_frames"] == 5, job  # forward dynamics: 4 actions + 1 frame


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
    with LiveServer(create_app(playground_config(root, tmp_path_factory.mktemp("sound_jobs")), generator=generator,
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
            before = job_ids(client)
            generate(page, prompt="a bell rings", size="64x64", frames=9, steps=2, guidance=3, fps=16)
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
