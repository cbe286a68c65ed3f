"""Generation settings against DESIGN 2.5 / 2.7. Expected values are transcribed from the spec, not from the code."""

from __future__ import annotations

import pickle
import warnings

import pytest

from cosmos3 import spec
from cosmos3.spec import Settings, SettingsError, resolve_settings

# DESIGN 2.7, width x height.
TABLE = {
    ("256p", "16:9"): (320, 192),
    ("256p", "4:3"): (320, 256),
    ("256p", "1:1"): (256, 256),
    ("256p", "3:4"): (256, 320),
    ("256p", "9:16"): (192, 320),
    ("480p", "16:9"): (832, 480),
    ("480p", "4:3"): (736, 544),
    ("480p", "1:1"): (640, 640),
    ("480p", "3:4"): (544, 736),
    ("480p", "9:16"): (480, 832),
    ("720p", "16:9"): (1280, 720),
    ("720p", "4:3"): (1104, 832),
    ("720p", "1:1"): (960, 960),
    ("720p", "3:4"): (832, 1104),
    ("720p", "9:16"): (720, 1280),
}


def _next_4k1(n: int) -> int:
    # Independent restatement of "rounded up to 4k+1": the smallest m >= n with m % 4 == 1.
    m = n
    while m % 4 != 1:
        m += 1
    return m


def test_constants_match_design() -> None:
    assert spec.DEFAULT_RESOLUTION == "480p"
    assert spec.DEFAULT_ASPECT_RATIO == "16:9"
    assert spec.DEFAULT_NUM_FRAMES == 189
    assert spec.DEFAULT_FPS == 24
    assert set(spec.FPS_CHOICES) == {10, 16, 24, 30}
    assert (spec.MIN_FRAMES, spec.MAX_FRAMES) == (5, 300)
    assert (spec.VAE_SPATIAL_FACTOR, spec.VAE_TEMPORAL_FACTOR) == (16, 4)
    assert set(spec.RESOLUTION_TIERS) == {"256p", "480p", "720p"}
    assert set(spec.ASPECT_RATIOS) == {"16:9", "4:3", "1:1", "3:4", "9:16"}
    flat = {(t, a): size for t, row in spec.RESOLUTIONS.items() for a, size in row.items()}
    assert flat == TABLE


def test_defaults() -> None:
    s = resolve_settings()
    assert (s.width, s.height) == (832, 480)
    assert s.num_frames == 189
    assert s.latent_frames == 48  # DESIGN 2.5: 189 -> 48
    assert s.fps == 24
    assert not s.is_image
    assert s.resolution == "480p"
    assert s.aspect_ratio == "16:9"
    assert (s.latent_width, s.latent_height) == (832 // 16, 480 // 16)


@pytest.mark.parametrize(("tier", "aspect"), sorted(TABLE))
def test_every_table_entry(tier: str, aspect: str) -> None:
    w, h = TABLE[(tier, aspect)]
    s = resolve_settings(resolution=tier, aspect_ratio=aspect)
    assert (s.width, s.height) == (w, h)
    assert s.resolution == tier
    assert s.aspect_ratio == aspect
    assert s.latent_width * 16 == w and s.latent_height * 16 == h
    # The exact size on the table is accepted silently and maps back to the same tier and aspect.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = resolve_settings(height=h, width=w)
        both = resolve_settings(resolution=tier, aspect_ratio=aspect, height=h, width=w)
    assert exact == s == both
    assert spec.aspect_for_size(w, h) == aspect


@pytest.mark.parametrize("aspect", ["16:9", "4:3", "1:1", "3:4", "9:16"])
def test_aspect_alone_uses_default_tier(aspect: str) -> None:
    s = resolve_settings(aspect_ratio=aspect)
    assert (s.width, s.height) == TABLE[("480p", aspect)]


@pytest.mark.parametrize("tier", ["256p", "480p", "720p"])
def test_tier_alone_uses_default_aspect(tier: str) -> None:
    s = resolve_settings(resolution=tier)
    assert (s.width, s.height) == TABLE[(tier, "16:9")]


@pytest.mark.parametrize(("given", "tier"), [("480", "480p"), ("720P", "720p"), (" 256p ", "256p"), (480, "480p")])
def test_resolution_normalized(given: object, tier: str) -> None:
    assert resolve_settings(resolution=given).resolution == tier


@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 17, 188, 189, 190, 192, 193, 297, 298, 300])
def test_frames_round_up_to_4k_plus_1(n: int) -> None:
    s = resolve_settings(num_frames=n)
    expected = _next_4k1(n)
    assert s.num_frames == expected
    assert s.num_frames >= n and (s.num_frames - 1) % 4 == 0
    assert s.latent_frames == 1 + (expected - 1) // 4
    assert spec.round_frames(n) == expected


def test_named_frame_examples() -> None:
    assert resolve_settings(num_frames=189).latent_frames == 48
    s = resolve_settings(num_frames=190)
    assert (s.num_frames, s.latent_frames) == (193, 49)


def test_image_mode() -> None:
    s = resolve_settings(num_frames=1, aspect_ratio="1:1")
    assert s.is_image
    assert s.num_frames == 1 and s.latent_frames == 1
    assert (s.width, s.height) == (640, 640)
    assert spec.round_frames(1) == 1
    assert spec.latent_frames(1) == 1


@pytest.mark.parametrize(("n", "lat"), [(1, 1), (5, 2), (9, 3), (189, 48), (193, 49), (121, 31)])
def test_latent_frames(n: int, lat: int) -> None:
    assert spec.latent_frames(n) == lat


@pytest.mark.parametrize("fps", [10, 16, 24, 30, 24.0, 10.0])
def test_fps_accepted(fps: float) -> None:
    s = resolve_settings(fps=fps)
    assert s.fps == int(fps) and isinstance(s.fps, int)
    assert s.duration == pytest.approx(189 / int(fps))


def _assert_error(exc: pytest.ExceptionInfo[SettingsError], field: str, *mentions: str) -> None:
    err = exc.value
    assert isinstance(err, ValueError)
    assert err.field == field
    msg = str(err)
    assert field in msg
    for m in mentions:
        assert m in msg, (m, msg)
        assert m in err.allowed or m in msg


@pytest.mark.parametrize("n", [0, -1, -189, 2, 3, 4, 301, 1000, 189.0, 5.5, "189", True, False])
def test_bad_frames(n: object) -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_settings(num_frames=n)
    _assert_error(exc, "num_frames", "300", "4k+1")
    assert repr(n) in str(exc.value)


@pytest.mark.parametrize("fps", [0, 12, 25, 60, 23.976, 24.5, -24, float("nan"), float("inf"), "24", True])
def test_bad_fps(fps: object) -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_settings(fps=fps)
    _assert_error(exc, "fps", "10", "16", "24", "30")


@pytest.mark.parametrize("tier", ["1080p", "360p", "p480", "", "hd", 481, 4.8])
def test_bad_resolution(tier: object) -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_settings(resolution=tier)
    _assert_error(exc, "resolution", "256p", "480p", "720p")


@pytest.mark.parametrize("aspect", ["21:9", "16/9", "2:1", "", 1.777, "9:16:1"])
def test_bad_aspect(aspect: object) -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_settings(aspect_ratio=aspect)
    _assert_error(exc, "aspect_ratio", "16:9", "4:3", "1:1", "3:4", "9:16")


@pytest.mark.parametrize(("kwargs", "missing"), [({"height": 480}, "width"), ({"width": 832}, "height")])
def test_size_needs_both_sides(kwargs: dict[str, int], missing: str) -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_settings(**kwargs)
    _assert_error(exc, missing, "16")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"resolution": "720p", "width": 832, "height": 480}, "resolution"),
        ({"resolution": "480p", "aspect_ratio": "16:9", "width": 640, "height": 640}, "aspect_ratio"),
        ({"aspect_ratio": "9:16", "width": 832, "height": 480}, "aspect_ratio"),
        ({"resolution": "480p", "width": 1024, "height": 576}, "resolution"),
        ({"aspect_ratio": "1:1", "width": 1024, "height": 576}, "aspect_ratio"),
    ],
)
def test_size_disagrees_with_tier_or_aspect(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(SettingsError) as exc:
        resolve_settings(**kwargs)
    err = exc.value
    assert err.field == field
    assert f"{kwargs['width']}x{kwargs['height']}" in str(err)
    assert err.allowed


def test_size_agreeing_with_tier_and_aspect() -> None:
    s = resolve_settings(resolution="480", aspect_ratio="9:16", width=480, height=832)
    assert (s.width, s.height, s.resolution, s.aspect_ratio) == (480, 832, "480p", "9:16")


@pytest.mark.parametrize(("w", "h"), [(1024, 576), (512, 512), (64, 64), (1920, 1920), (1920, 1088), (768, 432)])
def test_off_table_multiple_of_16_warns(w: int, h: int) -> None:
    with pytest.warns(UserWarning, match=f"{w}x{h}"):
        s = resolve_settings(width=w, height=h)
    assert (s.width, s.height) == (w, h)
    assert s.resolution is None
    assert (s.latent_width, s.latent_height) == (w // 16, h // 16)
    assert s.aspect_ratio in spec.ASPECT_RATIOS


def test_off_table_with_matching_aspect_is_accepted() -> None:
    with pytest.warns(UserWarning):
        s = resolve_settings(aspect_ratio="16:9", width=1024, height=576)
    assert s.aspect_ratio == "16:9"


@pytest.mark.parametrize(
    ("w", "h", "field"),
    [
        (1920, 1080, "height"),  # 1080 is not a multiple of 16
        (833, 480, "width"),
        (48, 64, "width"),  # below 64
        (64, 48, "height"),
        (1936, 1088, "width"),  # above 1920
        (0, 480, "width"),
        (832, -480, "height"),
        (832.0, 480, "width"),
        (832, "480", "height"),
        (True, 480, "width"),
    ],
)
def test_bad_sizes_refused(w: object, h: object, field: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SettingsError) as exc:
            resolve_settings(width=w, height=h)
    _assert_error(exc, field, "16", "64", "1920")


@pytest.mark.parametrize(
    ("w", "h", "aspect"),
    [(1920, 1080, "16:9"), (1024, 768, "4:3"), (500, 510, "1:1"), (768, 1024, "3:4"), (1080, 1920, "9:16"),
     (3000, 1000, "16:9"), (1000, 3000, "9:16"), (832, 480, "16:9"), (736, 544, "4:3")],
)
def test_aspect_for_size(w: int, h: int, aspect: str) -> None:
    assert spec.aspect_for_size(w, h) == aspect


@pytest.mark.parametrize("n", [0, -3, 2.0, None])
def test_helpers_reject_bad_counts(n: object) -> None:
    with pytest.raises(SettingsError):
        spec.round_frames(n)  # type: ignore[arg-type]
    with pytest.raises(SettingsError):
        spec.latent_frames(n)  # type: ignore[arg-type]


def test_settings_frozen_and_error_pickles() -> None:
    s = resolve_settings()
    with pytest.raises(AttributeError):
        s.width = 10  # type: ignore[misc]
    assert isinstance(s, Settings)
    try:
        resolve_settings(fps=25)
    except SettingsError as err:
        back = pickle.loads(pickle.dumps(err))
        assert (back.field, back.allowed, str(back)) == (err.field, err.allowed, str(err))
    else:
        pytest.fail("fps=25 accepted")
