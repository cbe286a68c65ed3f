"""What the playground's browser tests share: headless chromium (Selenium + chromium-driver), the page open in it
(`Page`: waits, screenshots into the test's tmp folder, synthetic file drops), and a live server on 127.0.0.1 with a
tiny random checkpoint. Test modules import the fixtures they use from here."""

from __future__ import annotations

import base64
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from serve_support import LiveServer

INSTALL = "chromium not found: apt-get install chromium chromium-driver"


def browser_paths() -> tuple[str, str] | None:
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser():
    paths = browser_paths()
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


def playground_config(checkpoint, storage, **over):
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

    with LiveServer(create_app(playground_config(checkpoint, tmp_path_factory.mktemp("playground")), *models)) as live:
        yield live


@pytest.fixture
def page(browser, server, tmp_path):
    return Page(browser, server.url, tmp_path)


def write_png(path) -> bytes:
    img = Image.fromarray(np.random.default_rng(4).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    img.save(path, "PNG")
    return path.read_bytes()


def job_ids(client) -> set[str]:
    return {v["id"] for v in client.get("/v1/videos", params={"limit": 100}).json()["data"]}


def generate(page, **fields) -> None:
    page.tab("generate")
    for css, key in (("#gen-prompt", "prompt"), ("#gen-size", "size"), ("#gen-frames", "frames"),
                     ("#gen-steps", "steps"), ("#gen-guidance", "guidance"), ("#gen-seed", "seed"),
                     ("#gen-fps", "fps")):
        page.find(css).clear()
        if key in fields:
            page.find(css).send_keys(str(fields[key]))
    page.find("#gen-submit").click()
