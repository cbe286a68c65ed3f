"""`cosmos3 generate --batch`: bad lines reported by number and field and skipped, outputs equal to single
requests, 2 ranks under torchrun (gloo) equal to 1, and a run killed with SIGKILL resumes to the same outputs, each
made once, every file whole. The embedded pico model at tiny sizes (64x64 and smaller, a few steps) on CPU."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos3 import batch
from cosmos3.cli import main
from cosmos3.generator import Generator
from cosmos3.media import read_image, read_video

from seeding import fresh_seed

TINY = dict(num_inference_steps=2, num_frames=5, height=64, width=64)
TINY_FLAGS = ["--num-inference-steps", "2", "--num-frames", "5", "--height", "64", "--width", "64"]
# The guardrails' face blur would filter the batch's frames and not those of the direct calls they are compared with.
GUARD_OFF = ["--no-guardrails"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")


@pytest.fixture(scope="module")
def pico():
    return Generator.from_pretrained("pico")


@contextmanager
def one_thread():
    """The subprocesses run one thread each; in-process references must too, or float sums may round apart."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("manifest."))


def records(out: Path) -> list[dict]:
    """The manifests' complete records, by line number (a kill may leave a torn last line: not a record)."""
    found = []
    for path in out.glob("manifest.rank*.jsonl"):
        for text in path.read_text().splitlines():
            try:
                found.append(json.loads(text))
            except json.JSONDecodeError:
                continue
    return sorted(found, key=lambda r: r["line"])


def manifest_lines(out: Path) -> list[int]:
    return [r["line"] for r in records(out)]


def digest(frames) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(frames)).tobytes()).hexdigest()[:16]


def assert_same_clip(a: Path, b: Path) -> None:
    """Two files of the same frames: PNG exactly; MP4 within libx264's own spread, which does not encode the same
    frames to the same bytes twice (measured here: up to 1.5 levels mean, 14 max, on 64x64 clips)."""
    fa, fb = frames_of(a), frames_of(b)
    assert fa.shape == fb.shape
    if a.suffix == ".png":
        assert np.array_equal(fa, fb), a.name
    else:
        diff = np.abs(fa.astype(np.int16) - fb.astype(np.int16))
        assert diff.mean() < 3 and diff.max() <= 64, (a.name, diff.mean(), diff.max())


def frames_of(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return np.asarray(read_image(path))[None]
    return read_video(path)[0].numpy()


def run_here(pico, monkeypatch, args: list[str]) -> int:
    """The command in this process on the loaded pico model, one thread (as the subprocesses run)."""
    monkeypatch.setattr(Generator, "from_pretrained", classmethod(lambda cls, *a, **k: pico))
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny sizes are off the published table
        return main(args)


# ------------------------------------------------------------------------------------------------ bad lines


def test_bad_lines_are_reported_by_number_and_field_and_skipped(pico, tmp_path, monkeypatch, capsys):
    s = fresh_seed()
    image = tmp_path / "inputs" / "frame.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(s).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    requests = write_lines(tmp_path / "requests.jsonl", [
        {"prompt": "a red block slides to the left", "seed": s},  # 1
        {"prompt": "a blue ball on a table", "mode": "t2i", "seed": s + 1, "guidance_scale": 2.0},  # 2: png
        "",  # 3: blank, not a request
        '{"prompt": "unterminated", ',  # 4: not JSON
        {"prompt": "x", "colour": "red"},  # 5: unknown field
        {"prompt": "x", "num_inference_steps": 0},  # 6: bad value
        {"prompt": "x", "image": "inputs/absent.png"},  # 7: missing input file
        {"prompt": "x", "mode": "v2v"},  # 8: mode the inputs do not make
        {"prompt": "a hand lifts a cup", "image": "inputs/frame.png", "seed": s + 2},  # 9: i2v, relative path
        ["not", "an", "object"],  # 10
    ])
    out = tmp_path / "out"
    code = run_here(pico, monkeypatch, ["generate", "--batch", str(requests), "--out", str(out), "--quiet",
                                        *TINY_FLAGS, *GUARD_OFF])
    captured = capsys.readouterr()
    assert code == 1  # a line failed
    summary = captured.out
    assert "9 requests" in summary and "3 done" in summary and "6 failed" in summary, summary
    reports = {int(t.split(":")[1]): t for t in captured.err.splitlines() if t.startswith(str(requests) + ":")}
    assert sorted(reports) == [4, 5, 6, 7, 8, 10], captured.err
    assert "not valid JSON" in reports[4]
    assert "colour: unknown field" in reports[5]
    assert "num_inference_steps:" in reports[6]
    assert "image:" in reports[7] and "absent.png" in reports[7]
    assert "mode: v2v needs a video" in reports[8]
    assert "expected a JSON object" in reports[10]
    for number in (4, 5, 6, 7, 8, 10):
        assert f"failed: line {number}:" in summary
    assert outputs(out) == ["000001.mp4", "000002.png", "000009.mp4"]
    assert manifest_lines(out) == [1, 2, 9]

    # Each output is what the same request gives on its own (PNG is lossless: exact).
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = pico.run(pico.resolve("a blue ball on a table", num_frames=1, height=64, width=64, seed=s + 1,
                                      num_inference_steps=2, guidance_scale=2.0, progress=False))
        i2v = pico.run(pico.resolve("a hand lifts a cup", image=image, seed=s + 2, progress=False, **TINY))
    assert np.array_equal(frames_of(out / "000002.png")[0], alone.frames[0].numpy())
    made = {r["line"]: r["frames_sha256"] for r in records(out)}
    assert made[2] == digest(alone.frames) and made[9] == digest(i2v.frames)
    video = frames_of(out / "000009.mp4")
    assert video.shape == tuple(i2v.frames.shape)
    assert np.abs(video.astype(int) - i2v.frames.numpy().astype(int)).mean() < 3  # H.264's loss only


def test_flags_are_defaults_a_line_overrides_and_kinds_take_their_own(pico, tmp_path):
    s = fresh_seed()
    requests = write_lines(tmp_path / "requests.jsonl", [
        {"prompt": "a cube", "seed": s, "num_frames": 9},  # the line's frames win over the flag's
        {"prompt": "a robot arm", "seed": s, "mode": "policy", "embodiment": "umi",
         "image": str(Path(__file__).parent / "missing-never.png")},
    ])
    defaults = dict(TINY, embodiment="umi")
    lines = batch.read_lines(requests, defaults, 0, batch.model_identity(pico))
    assert lines[0].fields["num_frames"] == 9 and "embodiment" not in lines[0].fields  # video line: no embodiment
    assert "height" not in lines[1].fields and "num_frames" not in lines[1].fields  # action line: no video size
    assert lines[1].fields["num_inference_steps"] == 2
    with pytest.raises(ValueError, match="image"):
        batch.resolve_line(pico, lines[1], requests.parent)
    # Controls as --control writes them, paths from the requests file's folder; an object with a stray key refused.
    transfer = batch.parse_line(3, json.dumps({"prompt": "p", "controls": ["depth:maps/d.mp4:0.5"]}), {}, 0, {})
    with pytest.raises(ValueError, match=f"controls.*{tmp_path / 'maps' / 'd.mp4'}"):
        batch.resolve_line(pico, transfer, tmp_path)
    stray = batch.parse_line(4, json.dumps({"prompt": "p", "controls": [{"kind": "edge", "path": "e.mp4"}]}), {}, 0,
                             {})
    with pytest.raises(ValueError, match=r"controls\[0\]: unknown key 'path'"):
        batch.resolve_line(pico, stray, tmp_path)
    # An unseeded line takes --seed plus its line number; the hash follows the request and the seed.
    again = batch.read_lines(write_lines(tmp_path / "b.jsonl", [{"prompt": "a"}, {"prompt": "a"}]), {}, 7, {})
    assert [x.seed for x in again] == [8, 9] and again[0].digest != again[1].digest


@pytest.mark.parametrize("flags, message", [
    (["--out", "DIR"], "--batch and --out go together"),
    (["--batch", "REQ"], "--batch and --out go together"),
    (["--batch", "REQ", "--out", "DIR", "a prompt"], "each line of"),
    (["--batch", "REQ", "--out", "DIR", "--image", "x.png"], "--image: with --batch"),
    (["--batch", "REQ", "--out", "DIR", "-o", "x.mp4"], "-o/--output"),
    (["--batch", "REQ", "--out", "DIR", "--parallel", "cfg"], "--parallel"),
    (["--batch", "MISSING", "--out", "DIR"], "--batch: no such file"),
])
def test_misused_flags_exit_2_before_the_model_loads(tmp_path, capsys, monkeypatch, flags, message):
    requests = write_lines(tmp_path / "requests.jsonl", [{"prompt": "p"}])
    monkeypatch.setattr(Generator, "from_pretrained", classmethod(lambda cls, *a, **k: pytest.fail("loaded")))
    swap = {"REQ": str(requests), "DIR": str(tmp_path / "out"), "MISSING": str(tmp_path / "absent.jsonl")}
    assert main(["generate", *[swap.get(f, f) for f in flags]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------------------------ ranks


def test_two_ranks_under_torchrun_give_the_outputs_of_one(pico, tmp_path, monkeypatch, capsys):
    s = fresh_seed()
    requests = write_lines(tmp_path / "requests.jsonl", [
        {"prompt": "a red block slides to the left", "seed": s},
        {"prompt": "a green cylinder", "mode": "t2i", "seed": s + 1},
        {"prompt": "waves on a shore"},  # unseeded: --seed + line number, whichever rank runs it
        {"prompt": "x", "seed": "seven"},  # bad: skipped, the run goes on
        {"prompt": "a ball rolls", "seed": s + 3, "num_frames": 9},
    ])
    one, two = tmp_path / "one", tmp_path / "two"
    command = ["generate", "--batch", str(requests), "--seed", str(s), *TINY_FLAGS, *GUARD_OFF]
    assert run_here(pico, monkeypatch, [*command, "--out", str(one), "--quiet"]) == 1
    assert "4 done" in capsys.readouterr().out

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "cosmos3.cli", *command, "--out", str(two)], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0, "a failed line must fail the job"
    assert "4 done" in proc.stdout and "1 failed" in proc.stdout and "2 ranks" in proc.stdout, proc.stdout + proc.stderr
    assert "rank 0" in proc.stderr and "rank 1" in proc.stderr  # a progress bar per rank
    ranks = {json.loads(t)["line"]: json.loads(t)["rank"] for p in two.glob("manifest.rank*.jsonl")
             for t in p.read_text().splitlines()}
    assert set(ranks.values()) == {0, 1}, ranks  # the lines really were shared
    assert outputs(two) == outputs(one) == ["000001.mp4", "000002.png", "000003.mp4", "000005.mp4"]
    made_one = {r["line"]: r["frames_sha256"] for r in records(one)}
    made_two = {r["line"]: r["frames_sha256"] for r in records(two)}
    assert made_one == made_two  # the generated frames, exactly
    assert len(set(made_one.values())) == 4  # four seeds, four clips
    for name in outputs(one):
        assert_same_clip(one / name, two / name)


# ------------------------------------------------------------------------------------------------ resume


def test_kill_9_then_rerun_makes_every_output_once_and_whole(pico, tmp_path, monkeypatch, capsys):
    s = fresh_seed()
    count = 8
    requests = write_lines(tmp_path / "requests.jsonl",
                           [{"prompt": f"scene {i}: a block moves", "seed": s + i} for i in range(count)])
    flags = ["--num-inference-steps", "4", "--num-frames", "9", "--height", "64", "--width", "96", "--quiet",
             *GUARD_OFF]
    out = tmp_path / "out"
    args = [sys.executable, "-m", "cosmos3.cli", "generate", "--batch", str(requests), "--out", str(out), *flags]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while not (out.is_dir() and manifest_lines(out)):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    finished = len(manifest_lines(out))
    assert 1 <= finished < count

    assert run_here(pico, monkeypatch, ["generate", "--batch", str(requests), "--out", str(out), *flags]) == 0
    assert f"{count - finished} done, {finished} skipped" in capsys.readouterr().out
    names = [f"{i:06d}.mp4" for i in range(1, count + 1)]
    assert outputs(out) == names  # no temporaries left, nothing extra
    assert manifest_lines(out) == list(range(1, count + 1))  # each line made once
    reference = tmp_path / "reference"  # the same batch, uninterrupted
    assert run_here(pico, monkeypatch, ["generate", "--batch", str(requests), "--out", str(reference), *flags]) == 0
    assert [r["frames_sha256"] for r in records(out)] == [r["frames_sha256"] for r in records(reference)]
    for name in names:
        assert frames_of(out / name).shape == (9, 64, 96, 3)  # decodes: whole
        assert_same_clip(out / name, reference / name)


def test_torn_manifest_stale_temporaries_and_unrecorded_outputs_are_redone(pico, tmp_path):
    """The crash windows, made on purpose: a manifest line cut short, a temporary file cut short, an output renamed
    into place whose manifest line never got written."""
    s = fresh_seed()
    requests = write_lines(tmp_path / "requests.jsonl", [{"prompt": f"clip {i}", "seed": s + i} for i in range(3)])
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = batch.run_batch(pico, requests, out, defaults=TINY, quiet=True)
        assert first.done == 3
        reference = records(out)
        manifest = out / "manifest.rank0.jsonl"
        kept = manifest.read_text().splitlines()
        manifest.write_text(kept[0] + "\n" + kept[1][: len(kept[1]) // 2])  # line 2's record torn, line 3's lost
        (out / "000002.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # as if its write had been cut short
        (out / ".000003.0123456789ab.tmp.mp4").write_bytes(b"half")
        again = batch.run_batch(pico, requests, out, defaults=TINY, quiet=True)
    assert (again.skipped, again.done, again.failed) == (1, 2, [])
    assert outputs(out) == ["000001.mp4", "000002.mp4", "000003.mp4"]
    assert manifest_lines(out) == [1, 2, 3]
    assert [r["frames_sha256"] for r in records(out)] == [r["frames_sha256"] for r in reference]
    for name in outputs(out):
        assert frames_of(out / name).shape == (5, 64, 64, 3)


def test_a_guardrail_refuses_a_line_not_the_run(pico, tmp_path):
    from cosmos3.guardrails import Guardrail

    class Refuse:
        name = "test"

        def check(self, text):
            return "names the forbidden word" if "forbidden" in text else None

    s = fresh_seed()
    requests = write_lines(tmp_path / "requests.jsonl", [{"prompt": "a forbidden scene", "seed": s},
                                                         {"prompt": "a calm scene", "seed": s},
                                                         {"prompt": "calm", "negative_prompt": "forbidden"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = batch.run_batch(pico, requests, tmp_path / "out", defaults=TINY, quiet=True,
                                  guard=Guardrail([Refuse()]))
    assert summary.done == 1 and [n for n, _ in summary.failed] == [1, 3]
    assert summary.failed[0][1].startswith("prompt blocked") and summary.failed[1][1].startswith("negative_prompt")
    assert outputs(tmp_path / "out") == ["000002.mp4"]
