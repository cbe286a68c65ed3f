"""The Reasoner against transformers' Qwen3-VL (the oracle, DESIGN 1.4) at a tiny random configuration.

One Qwen3-VL model with fresh random weights per run is saved with `save_pretrained`; our Reasoner loads that
directory (Qwen3-VL layout) and an official-layout directory holding the same weights, and must agree with it:
logits within 1e-4 relative for text, image and video prompts, identical greedy tokens, identical mRoPE ids.
The decode loop (streaming, stop strings, thinking, finish reasons) is also checked on a scripted model.
"""

import base64
import random

import numpy as np
import pytest
import torch

from cosmos3.checkpoint import save_transformer
from cosmos3.config import get_preset
from cosmos3.model import Cosmos3Omni, KVCache
from cosmos3.model.vision import VisionProcessor
from cosmos3.cli import reason_main
from cosmos3.reasoner import REASONING_INSTRUCTION, Reasoner, split_reasoning
from cosmos3.sampling import PLAIN, REASONING, Sampler, SamplingParams
from cosmos3.tokenizers import byte_level_tokenizer

from fixture_paths import FIXTURES
from reasoner_oracle import VIDEO_CONFIG, randomize_weights, random_qwen3vl, save_qwen3vl, write_processor_configs
from reasoner_oracle import hf_inputs as _hf_inputs
from seeding import fresh_seed


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(qwen dir, official dir, the transformers model, tokenizer), fresh random shapes and weights each run."""
    seed = fresh_seed("test_reasoner.py::built")
    print(f"random seed: {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    tok = byte_level_tokenizer()
    ref = random_qwen3vl(rng, gen, tok, layers=rng.choice([2, 3]))
    root = tmp_path_factory.mktemp("reasoner")
    qwen = save_qwen3vl(ref, tok, root / "qwen3vl")

    # Official layout with the same und weights, plus random gen weights the reasoner must skip.
    official = root / "official"
    und = Reasoner.from_pretrained(qwen).model
    full = Cosmos3Omni(und.config)
    randomize_weights(full, gen)
    full.load_state_dict(und.state_dict(), strict=False)
    save_transformer(full, official / "transformer")
    ref.model.visual.save_pretrained(official / "vision_encoder")
    write_processor_configs(official / "vision_encoder")
    tok.save_pretrained(official / "text_tokenizer")
    return qwen, official, ref, tok, rng


@pytest.fixture(scope="module")
def reasoner(built):
    return Reasoner.from_pretrained(built[0])


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    return [np.random.randint(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _messages(kind: str, rng) -> list[dict]:
    content = []
    if kind in ("video", "mixed"):  # odd frame count: the last temporal patch is padded
        content.append({"type": "video", "video": _frames(rng.choice([3, 4, 5]), 48, rng.choice([64, 80]))})
    if kind in ("image", "mixed"):
        content.append({"type": "image", "image": _frames(1, rng.randint(40, 90), rng.randint(40, 90))[0]})
    content.append({"type": "text", "text": "What happens here? Answer briefly."})
    return [{"role": "user", "content": content}]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("kind", ["text", "image", "video", "mixed"])
def test_prefill_logits_and_positions_match_qwen3vl(kind, built, reasoner):
    _, _, ref, tok, rng = built
    prompt = reasoner.build_prompt(_messages(kind, rng))
    cache = KVCache.allocate(reasoner.model.config, 1, prompt.input_ids.shape[0] + 1, torch.float32)
    ours = reasoner.prefill(prompt, cache)
    kw = _hf_inputs(prompt, tok)
    with torch.no_grad():
        theirs = ref(**kw).logits[0, -1]
        if kind != "text":
            pos, delta = ref.model.get_rope_index(kw["input_ids"], kw["mm_token_type_ids"],
                                                  image_grid_thw=kw.get("image_grid_thw"),
                                                  video_grid_thw=kw.get("video_grid_thw"))
            assert torch.equal(pos[:, 0].float(), prompt.positions) and int(delta) == prompt.rope_delta
    assert _rel(ours, theirs) < 1e-4


def test_batched_prefill_equals_each_prompt_alone(built, reasoner):
    """Prompts of different lengths and media in one padded forward: each row's logits and cached keys/values are
    those of its prompt run alone (and its logits those of transformers)."""
    _, _, ref, tok, rng = built
    kinds = ["mixed", "text", "image", "video"]
    rng.shuffle(kinds)
    prompts = [reasoner.build_prompt(_messages(k, rng)) for k in kinds]
    lengths = [p.input_ids.shape[0] for p in prompts]
    assert len(set(lengths)) > 1
    cfg = reasoner.model.config
    batch = KVCache.allocate(cfg, len(prompts), max(lengths) + 3, torch.float32)
    together = reasoner.prefill_batch(prompts, batch)
    for i, (prompt, L) in enumerate(zip(prompts, lengths)):
        alone_cache = KVCache.allocate(cfg, 1, L, torch.float32)
        alone = reasoner.prefill(prompt, alone_cache)
        assert _rel(together[i], alone) < 1e-5
        for got, want in zip(batch.keys + batch.values, alone_cache.keys + alone_cache.values):
            assert _rel(got[i, :, :L], want[0]) < 1e-5
        with torch.no_grad():
            theirs = ref(**_hf_inputs(prompt, tok)).logits[0, -1]
        assert _rel(together[i], theirs) < 1e-4


@pytest.mark.parametrize("kind", ["text", "image"])
def test_greedy_tokens_equal_transformers_generate(kind, built, reasoner):
    _, _, ref, tok, rng = built
    messages = _messages(kind, rng)
    out = reasoner.chat(messages, temperature=0, presence_penalty=0.0, max_tokens=10)
    kw = _hf_inputs(reasoner.build_prompt(messages), tok)
    with torch.no_grad():
        seq = ref.generate(**kw, do_sample=False, max_new_tokens=10, eos_token_id=list(tok.eos_ids),
                           pad_token_id=tok.eos_ids[0])[0, kw["input_ids"].shape[1]:].tolist()
    assert out.token_ids == seq
    assert out.usage == {"prompt_tokens": kw["input_ids"].shape[1], "completion_tokens": len(seq),
                         "total_tokens": kw["input_ids"].shape[1] + len(seq)}


def test_official_layout_loads_und_only_and_gives_same_logits(built, reasoner):
    _, official, _, _, rng = built
    other = Reasoner.from_pretrained(official)
    assert not other.model.with_gen and not hasattr(other.model, "proj_in")
    prompt = reasoner.build_prompt(_messages("mixed", rng))
    logits = []
    for r in (reasoner, other):
        cache = KVCache.allocate(r.model.config, 1, prompt.input_ids.shape[0], torch.float32)
        logits.append(r.prefill(prompt, cache))
    # Same weights, same code: only the memory layout (mapped file vs copy) may change float32 rounding.
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-6)


def test_stream_equals_full_and_seeded_sampling_repeats(built, reasoner):
    rng = built[4]
    messages = _messages("text", rng)
    full = reasoner.chat(messages, max_tokens=12, seed=3)
    again = reasoner.chat(messages, max_tokens=12, seed=3)
    stream = reasoner.chat(messages, max_tokens=12, seed=3, stream=True)
    deltas = list(stream)
    assert full.token_ids == again.token_ids == stream.output.token_ids
    assert "".join(deltas) == full.raw_text
    greedy = reasoner.chat(messages, max_tokens=6, temperature=0, presence_penalty=0.0)
    top1 = reasoner.chat(messages, max_tokens=6, temperature=1.0, top_k=1, presence_penalty=0.0, seed=5)
    assert greedy.token_ids == top1.token_ids


# ------------------------------------------------------------------------------------------ the decode loop


class Scripted(Reasoner):
    """A reasoner whose 'network' emits a fixed token sequence (one-hot logits): exercises the loop exactly."""

    def __init__(self, tok, text: str, end: bool = True):
        cfg = get_preset("tiny").replace(num_hidden_layers=1, vocab_size=len(tok))
        super().__init__(Cosmos3Omni(cfg, with_gen=False), tok, None, VisionProcessor())
        self.script = tok.encode(text) + ([tok.im_end_id] if end else [])
        self.step = 0

    def _next(self):
        logits = torch.full((self.model.config.vocab_size,), -1e4)
        logits[self.script[min(self.step, len(self.script) - 1)]] = 0.0
        self.step += 1
        return logits

    def prefill_batch(self, prompts, cache):
        self.step = 0
        return self._next()[None]

    def decode_batch(self, tokens, slots, rope_deltas, cache):
        return self._next()[None]


def _run(r, **kw):
    stream = r.chat("hi", temperature=0, presence_penalty=0.0, stream=True, **kw)
    deltas = list(stream)
    return deltas, stream.output


def test_stream_never_splits_multibyte_characters():
    tok = byte_level_tokenizer()
    text = "héllo 世界 🌍 ok"
    deltas, out = _run(Scripted(tok, text))
    assert "".join(deltas) == out.text == text and all("\ufffd" not in d for d in deltas)
    assert out.finish_reason == "stop" and out.usage["completion_tokens"] == len(tok.encode(text)) + 1


@pytest.mark.parametrize("stop,expected", [(["rld"], "héllo wö"), (["wö", "zz"], "héllo "), (["lx", "ab"], None),
                                           ("o", "héll")])
def test_stop_strings(stop, expected):
    tok = byte_level_tokenizer()
    text = "héllo wörld"
    deltas, out = _run(Scripted(tok, text), stop=stop)
    assert out.text == "".join(deltas) == (text if expected is None else expected)
    assert out.finish_reason == "stop"


def test_length_finish_and_think_split():
    tok = byte_level_tokenizer()
    deltas, out = _run(Scripted(tok, "<think>\nthe ball falls\n</think>\n\nYes.", end=True))
    assert (out.reasoning, out.text) == ("the ball falls", "Yes.")
    assert "".join(deltas) == out.raw_text
    deltas, out = _run(Scripted(tok, "abcdefgh", end=False), max_tokens=5)
    assert out.finish_reason == "length" and out.text == "abcde" and out.usage["completion_tokens"] == 5
    assert split_reasoning("<think>cut short") == ("cut short", "")
    assert split_reasoning("reason</think> answer") == ("reason", "answer")
    assert split_reasoning("plain") == (None, "plain")


def test_think_adds_the_format_instruction_and_system_prompt(reasoner):
    tok = reasoner.tokenizer
    text = tok.decode(reasoner.build_prompt("Is it stable?", think=True).input_ids.tolist(), False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert REASONING_INSTRUCTION in text and text.endswith("<|im_start|>assistant\n")
    assert "system" not in tok.decode(reasoner.build_prompt("x", system_prompt=None).input_ids.tolist(), False)


# ------------------------------------------------------------------------------------------ sampling


def test_sampler_penalties_presets_and_validation():
    logits = torch.tensor([2.0, -1.0, 1.9, 0.5])
    s = Sampler(SamplingParams(temperature=0, repetition_penalty=2.0), 4, torch.tensor([0, 1]))
    assert s(logits.clone()) == 2  # 2.0 / 2 = 1.0 < 1.9
    s = Sampler(SamplingParams(temperature=0, presence_penalty=1.0), 4, torch.tensor([3]))
    s.update(0)
    assert s(logits.clone()) == 2
    s = Sampler(SamplingParams(temperature=1.5, top_p=0.01, seed=1), 4, torch.tensor([0]))
    assert {s(logits.clone()) for _ in range(20)} == {0}
    assert (PLAIN.temperature, PLAIN.top_p, PLAIN.top_k, PLAIN.presence_penalty) == (0.7, 0.8, 20, 1.5)
    assert (REASONING.temperature, REASONING.top_p, REASONING.top_k, REASONING.presence_penalty) == (0.6, 0.95, 20, 0)
    for bad in (dict(temperature=-1), dict(top_p=0), dict(max_tokens=0), dict(top_k=1.5), dict(stop=[""])):
        with pytest.raises(ValueError):
            PLAIN.replace(**bad)


# ------------------------------------------------------------------------------------------ media


def _png_uri(arr: np.ndarray) -> str:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_image_url_data_uri_and_path_give_the_same_prompt(reasoner, tmp_path):
    from PIL import Image

    arr = _frames(1, 50, 70)[0]
    Image.fromarray(arr).save(tmp_path / "a.png")
    prompts = [reasoner.build_prompt([{"role": "user", "content": [part]}]) for part in (
        {"type": "image_url", "image_url": {"url": _png_uri(arr)}}, {"type": "image", "image": str(tmp_path / "a.png")},
        {"type": "image_url", "image_url": {"url": f"file://{tmp_path / 'a.png'}"}}, {"type": "image", "image": arr})]
    first = prompts[0]
    for p in prompts[1:]:
        assert torch.equal(p.input_ids, first.input_ids) and torch.equal(p.media[0].pixels, first.media[0].pixels)


@pytest.mark.parametrize("case", ["missing", "corrupt", "gif", "not_base64", "remote", "float_array", "elongated",
                                  "too_many_frames", "corrupt_video", "unknown_part", "empty_url", "frame_sizes"])
def test_bad_media_raise_value_error(case, reasoner, tmp_path):
    from PIL import Image

    part: dict
    if case == "missing":
        part = {"type": "image", "image": str(tmp_path / "nope.jpg")}
    elif case == "corrupt":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
        part = {"type": "image_url", "image_url": {"url": str(tmp_path / "bad.png")}}
    elif case == "gif":
        Image.new("RGB", (32, 32)).save(tmp_path / "a.gif")
        part = {"type": "image", "image": str(tmp_path / "a.gif")}
    elif case == "not_base64":
        part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@not base64@@@"}}
    elif case == "remote":
        part = {"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}}
    elif case == "float_array":
        part = {"type": "image", "image": np.zeros((32, 32, 3), dtype=np.float32)}
    elif case == "elongated":
        part = {"type": "image", "image": np.zeros((2, 600, 3), dtype=np.uint8)}
    elif case == "too_many_frames":
        part = {"type": "video", "video": _frames(VIDEO_CONFIG["max_frames"] + 1, 8, 8)}
    elif case == "corrupt_video":
        (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
        part = {"type": "video", "video": str(tmp_path / "bad.mp4")}
    elif case == "unknown_part":
        part = {"type": "audio_url", "audio_url": {"url": "x.wav"}}
    elif case == "empty_url":
        part = {"type": "image_url", "image_url": {"url": ""}}
    else:
        part = {"type": "video", "video": [np.zeros((32, 32, 3), np.uint8), np.zeros((32, 48, 3), np.uint8)]}
    with pytest.raises(ValueError) as info:
        reasoner.build_prompt([{"role": "user", "content": [part, {"type": "text", "text": "?"}]}])
    assert str(info.value) and "Traceback" not in str(info.value)


def test_fixture_video_and_image_through_the_processor(reasoner):
    prompt = reasoner.build_prompt([{"role": "user", "content": [
        {"type": "video", "video": str(FIXTURES / "videos" / "physical_plausibility.mp4")},
        {"type": "image", "image": str(FIXTURES / "images" / "robot_153.jpg")}, {"type": "text", "text": "?"}]}])
    video, image = prompt.media
    assert video.grid[0] >= 2 and video.grid[1] % 2 == 0 and video.grid[2] % 2 == 0
    assert video.timestamps == sorted(video.timestamps) and video.timestamps[0] < 1.0
    assert image.grid[0] == 1 and int(prompt.visual_mask.sum()) == video.num_tokens(2) + image.num_tokens(2)


def test_reason_main(built, capsys, tmp_path):
    assert reason_main(["--checkpoint", str(tmp_path / "none"), "q"]) == 2
    assert reason_main(["--checkpoint", str(built[0]), "--image", str(tmp_path / "x.png"), "q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert reason_main(["--checkpoint", str(built[0]), "--max-tokens", "3", "--temperature", "0", "Hi"]) == 0
