"""Transfer over HTTP: extra_params.edge / blur / depth / seg / wsm (vLLM-Omni's hint fields: control_path,
control_weight, preset_*; `true` computes edge / blur from the input_reference video) and control_guidance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serve_support import assert_error, wait_for
from cosmos3.media import probe_video, write_video

SMALL = {"prompt": "a red block slides left", "size": "64x64", "num_frames": "5", "num_inference_steps": "2",
         "guidance_scale": "3"}


@pytest.fixture(scope="module")
def clips(media_dir):
    rng = np.random.default_rng(3)
    out = {}
    for name, (t, h, w) in {"map": (5, 64, 64), "short": (3, 64, 64), "wide": (5, 64, 128)}.items():
        out[name] = write_video(media_dir / f"control_{name}.mp4",
                                rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8), 16)
    return out


def _extra(**fields) -> dict:
    return {**SMALL, "extra_params": json.dumps(fields)}


def test_control_path_and_weights_generate(client, clips, tmp_path):
    extra = {"depth": {"control_path": str(clips["map"]), "control_weight": 0.5},
             "seg": str(clips["map"]), "control_guidance": 1.5, "control_guidance_interval": [100, 900]}
    r = client.post("/v1/videos/sync", data=_extra(**extra))
    assert r.status_code == 200, r.text
    (tmp_path / "out.mp4").write_bytes(r.content)
    info = probe_video(tmp_path / "out.mp4")
    assert (info["frames"], info["width"], info["height"]) == (5, 64, 64)


def test_edge_from_the_input_reference_video(client, clips):
    files = {"input_reference": ("clip.mp4", clips["map"].read_bytes(), "video/mp4")}
    extra = {"edge": {"preset_edge_threshold": "low", "control_weight": 2}, "blur": True}
    r = client.post("/v1/videos", data=_extra(**extra), files=files)
    assert r.status_code == 200, r.text
    job = wait_for(client, r.json()["id"], ("completed", "failed"))
    assert job["status"] == "completed", job


@pytest.mark.parametrize("extra, status, code, param", [
    ({"edge": True}, 400, "missing_field", "extra_params.edge"),
    ({"depth": True}, 400, "missing_field", "extra_params.depth"),
    ({"edge": {"control_path": "/etc/hostname"}}, 403, "path_not_allowed", "extra_params.edge.control_path"),
    ({"seg": {"control_weight": -1}}, 400, "invalid_value", "extra_params.seg.control_weight"),
    ({"edge": {"preset_blur_strength": "low"}}, 400, "unknown_field", "extra_params.edge.preset_blur_strength"),
    ({"blur": {"preset_blur_strength": "max"}}, 400, "invalid_value", "extra_params.blur.preset_blur_strength"),
    ({"wsm": 3}, 400, "invalid_value", "extra_params.wsm"),
    ({"canny": True}, 400, "unknown_field", "extra_params.canny"),
    ({"control_guidance": 1.5}, 400, "invalid_value", "extra_params.control_guidance"),
    ({"control_guidance": 20}, 400, "invalid_value", "extra_params.control_guidance"),
    ({"control_guidance_interval": [0, 500]}, 400, "invalid_value", "extra_params.control_guidance_interval"),
    ({"depth": True, "control_guidance_interval": [1, 2, 3]}, 400, "invalid_value",
     "extra_params.control_guidance_interval"),
])
def test_bad_hints_are_refused(client, extra, status, code, param):
    assert_error(client.post("/v1/videos", data=_extra(**extra)), status, code, param)


def test_bad_control_media_are_refused(client, clips):
    for name, words in (("short", "has 3 frames; the output has 5"), ("wide", "aspect ratios differ")):
        err = assert_error(client.post("/v1/videos", data=_extra(depth=str(clips[name]))), 400)
        assert words in err["message"]
    err = assert_error(client.post("/v1/videos", data=_extra(depth=str(clips["map"]), control_guidance=11)), 400,
                       param="extra_params.control_guidance")
    image = {"input_reference": ("x.png", _png(), "image/png")}
    assert_error(client.post("/v1/videos", data=_extra(edge=True), files=image), 400, "missing_field",
                 "extra_params.edge")


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()
