"""The Reasoner's prefill against transformers' Qwen3-VL at EVERY prompt position, at a depth where every deepstack
layer matters.

test_reasoner.py compares the last token's logits only, at a random depth of 2 or 3 text layers: a deepstack feature
dropped from the last layer that takes one then changes nothing the last token sees, and the bug passes half the
runs. Here the text stack has 3 or 4 layers, the vision tower 3 to 4 blocks with 3 deepstack layers, and the logits
of every position (the visual tokens' own rows included) must match; the mRoPE ids must equal transformers'
`get_rope_index`. Fresh random shapes and weights each run.
"""

import random

import numpy as np
import pytest
import torch

from cosmos3.model import KVCache
from cosmos3.reasoner import Reasoner
from cosmos3.tokenizers import byte_level_tokenizer
from reasoner_oracle import hf_inputs as _hf_inputs
from reasoner_oracle import random_qwen3vl, save_qwen3vl
from seeding import fresh_seed



@pytest.fixture(scope="module")
def built(tmp_path_factory):
    seed = fresh_seed("test_reasoner_all_positions.py::built")
    print(f"random seed: {seed}")
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    tok = byte_level_tokenizer()
    layers, depth = rng.choice([3, 4]), rng.choice([3, 4])
    ref = random_qwen3vl(rng, gen, tok, layers=layers, depth=depth, deepstack=sorted(rng.sample(range(depth), 3)))
    root = save_qwen3vl(ref, tok, tmp_path_factory.mktemp("reasoner-deep"))
    reasoner = Reasoner.from_pretrained(root)
    assert reasoner.model.config.num_hidden_layers >= 3 and reasoner.vision.num_deepstack == 3
    return reasoner, ref, tok, rng


def _messages(kind: str, rng: random.Random) -> list[dict]:
    nrng = np.random.default_rng(rng.randrange(2**31))
    frame = lambda h, w: nrng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    content = []
    if kind in ("video", "mixed"):
        content.append({"type": "video", "video": [frame(48, 64) for _ in range(rng.choice([3, 4, 5]))]})
    if kind in ("image", "mixed"):
        content.append({"type": "image", "image": frame(rng.randint(40, 90), rng.randint(40, 90))})
    text = "What happens here? Answer briefly."
    if kind == "long-text":  # past the MLP's 512-row chunk
        text = " ".join(rng.choice(["the", "robot", "arm", "moves", "a", "red", "block", "left"]) for _ in range(150))
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("kind", ["text", "long-text", "image", "video", "mixed"])
def test_prefill_logits_at_every_position_match_qwen3vl(kind, built):
    reasoner, ref, tok, rng = built
    prompt = reasoner.build_prompt(_messages(kind, rng))
    L = prompt.input_ids.shape[0]
    seen = []
    hook = reasoner.model.norm.register_forward_hook(lambda mod, args, out: seen.append(out))
    try:
        cache = KVCache.allocate(reasoner.model.config, 1, L + 1, torch.float32)
        last = reasoner.prefill(prompt, cache)
    finally:
        hook.remove()
    with torch.no_grad():
        ours = reasoner.model.logits(seen[-1][0, :L])  # [L, V], the prefill's own hidden states
    kw = _hf_inputs(prompt, tok)
    with torch.no_grad():
        theirs = ref(**kw).logits[0]
    assert ours.shape == theirs.shape
    torch.testing.assert_close(last, ours[-1], rtol=1e-5, atol=1e-5)
    scale = theirs.abs().max(dim=-1).values  # per position
    worst = float(((ours - theirs).abs().max(dim=-1).values / scale).max())
    assert worst < 1e-4, f"worst position's relative error {worst:.2e}"
    if kind == "long-text":
        assert L > 512
    if kind not in ("text", "long-text"):
        visual = prompt.visual_mask
        assert bool(visual.any())
        pos, delta = ref.model.get_rope_index(kw["input_ids"], kw["mm_token_type_ids"],
                                              image_grid_thw=kw.get("image_grid_thw"),
                                              video_grid_thw=kw.get("video_grid_thw"))
        assert torch.equal(pos[:, 0].float(), prompt.positions) and int(delta) == prompt.rope_delta
