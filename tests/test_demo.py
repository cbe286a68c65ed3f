"""`cosmos3 demo` on the embedded pico model (one denoising step): its one-page index.html references only files
the demo wrote beside it, shows the reasoner's answers and the policy's actions, and ./out holds the inputs."""

import html
import json
import re

import numpy as np
import pytest
from PIL import Image

from cosmos3.checkpoint import EMBEDDED
from cosmos3.demo import STRIP_FRAMES, demo_main, svg_plot


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert demo_main(["--out", str(out), "--steps", "1", "--quiet"]) == 0
    return out, buf.getvalue()


def test_page_references_existing_files_and_holds_the_answers(demo):
    out, printed = demo
    page = (out / "index.html").read_text()
    assert str((out / "index.html").resolve()) in printed
    refs = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert {"frame.png", "actions.json", "rollout.mp4", "t2v.mp4", "policy.mp4", "policy.json", "answers.txt",
            "strip.png"} <= refs
    for ref in refs:
        assert "/" not in ref and (out / ref).is_file() and (out / ref).stat().st_size > 0, ref
    answers = re.findall(r"^A: (.*)$", (out / "answers.txt").read_text(), flags=re.M)
    assert len(answers) == 2
    for a in answers:
        assert f"<dd>{html.escape(a)}</dd>" in page or (not a and "(empty answer)" in page)
    assert page.count("<video ") == 3


def test_inputs_lie_beside_outputs_and_actions_are_plotted(demo):
    out, _ = demo
    shipped = EMBEDDED["pico"] / "demo"
    assert (out / "frame.png").read_bytes() == (shipped / "frame.png").read_bytes()
    assert (out / "actions.json").read_bytes() == (shipped / "actions.json").read_bytes()
    page = (out / "index.html").read_text()
    given = np.asarray(json.loads((out / "actions.json").read_text()))
    policy = np.asarray(json.loads((out / "policy.json").read_text()))
    polylines = re.findall(r'<polyline [^>]*points="([^"]+)"', page)
    assert len(polylines) == given.shape[1] + policy.shape[1]
    assert [len(p.split()) for p in polylines] == [given.shape[0]] * given.shape[1] + [policy.shape[0]] * policy.shape[1]
    strip = Image.open(out / "strip.png")
    w, h = Image.open(out / "frame.png").size
    assert strip.size == ((STRIP_FRAMES + 1) * (w // 2 + 4) + 4, 3 * (h // 2 + 4) + 4)


def test_svg_plot_scales_each_dimension_to_its_own_range():
    t = np.linspace(0, 1, 5)
    svg = svg_plot(np.stack([t, 100 * t, np.zeros(5)], 1), ("a", "b", "c"), "t", width=108, height=56)
    lines = re.findall(r'points="([^"]+)"', svg)
    a, b, c = ([tuple(map(float, xy.split(","))) for xy in pts.split()] for pts in lines)
    assert a == b and a[0] == (4.0, 44.0) and a[-1] == (104.0, 8.0)  # same shape whatever the scale
    assert {y for _, y in c} == {28.0}  # a constant: a flat line in the middle
    assert "b: 0 .. 100" in svg
