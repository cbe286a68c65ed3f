"""Data plumbing: the sharded sampler (deterministic, process-count independent, resumable), micro-batch
grouping under a token budget, chat label masks, caption format, and the data sources on tiny inputs."""

import json
from types import SimpleNamespace

import torch

from cosmos3.train.batch import group, prepare_chat
from cosmos3.train.data import (ChatSource, Encoder, LatentSource, ShardedSampler, VideoFolderSource, action_caption,
                                sample_generator)
from train_helpers import chat_file, latents_folder, tiny_checkpoint, video_folder


def test_sampler_is_shared_by_any_process_count_and_resumes():
    one = ShardedSampler(7, seed=3)
    stream = [i for _ in range(5) for _, i in one.next_batch(4)]
    assert sorted(stream[:7]) == list(range(7))  # each epoch is a permutation
    two = [ShardedSampler(7, seed=3) for _ in range(2)]
    got = []
    for _ in range(5):
        shares = [s.next_batch(4, rank=r, world=2) for r, s in enumerate(two)]
        batch = sorted(shares[0] + shares[1])
        got += [i for _, i in batch]
    assert got == stream
    resumed = ShardedSampler(7, seed=3)
    resumed.load_state_dict({**one.state_dict(), "position": 8})
    assert [i for _, i in resumed.next_batch(4)] == stream[8:12]
    assert ShardedSampler(7, seed=4).next_batch(7) != ShardedSampler(7, seed=3).next_batch(7)
    a, b = sample_generator(0, 5), sample_generator(0, 5)
    assert torch.equal(torch.randn(3, generator=a), torch.randn(3, generator=b))


def test_grouping_respects_shape_and_budget():
    def s(L, N, key):
        return SimpleNamespace(input_ids=torch.zeros(L), tokens=L + N, shape_key=key)

    samples = [s(10, 20, "a"), s(12, 20, "a"), s(5, 8, "b"), s(30, 20, "a"), s(9, 8, "b"), s(200, 20, "a")]
    groups = group(samples, budget=70)
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        assert len({samples[i].shape_key for i in g}) == 1
        longest = max(samples[i].input_ids.shape[0] for i in g)
        gen = samples[g[0]].tokens - samples[g[0]].input_ids.shape[0]
        assert len(g) == 1 or len(g) * (longest + gen) <= 70
    assert [5] in groups  # over budget alone


def test_chat_labels_cover_assistant_turns_only():
    from cosmos3.model.vision import VisionProcessor
    from cosmos3.reasoner import Reasoner
    from cosmos3.tokenizers import TextTokenizer

    tok = TextTokenizer.from_pretrained(tiny_checkpoint() / "text_tokenizer")
    reasoner = Reasoner(SimpleNamespace(config=SimpleNamespace(vocab_size=300)), tok, None, VisionProcessor())
    messages = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yo."},
                {"role": "user", "content": "And?"}, {"role": "assistant", "content": "Done"}]
    s = prepare_chat(messages, reasoner, 4096)
    labelled = tok.decode(s.input_ids[s.labels].tolist(), skip_special_tokens=False)
    assert labelled == "Yo.<|im_end|>Done<|im_end|>"
    text = tok.decode(s.input_ids.tolist(), skip_special_tokens=False)
    assert text.endswith("Done<|im_end|>\n") or text.endswith("Done<|im_end|>")  # no trailing generation prompt
    assert s.positions.shape == (3, s.input_ids.shape[0])
    cut = prepare_chat(messages, reasoner, 20)
    assert cut.input_ids.shape[0] == 20 and cut.labels.shape[0] == 20


def test_action_caption_is_the_release_json():
    cap = json.loads(action_caption("pick up the cube", "wrist_view", 17, 15.0))
    assert cap["cinematography"]["framing"] == "This video is captured from a wrist-mounted camera."
    assert cap["actions"] == [{"time": "0:00-0:01", "description": "pick up the cube."}]


def test_sources_on_tiny_data():
    videos = VideoFolderSource(video_folder(), Encoder(tiny_checkpoint(), torch.device("cpu")), num_frames=5,
                               height=32, width=32)
    item = videos[1]
    assert len(videos) == 2 and item.prompt == "A blue cube slides to the right."
    assert tuple(item.vision.shape) == (4, 2, 2, 2) and item.fps == 16.0 and item.num_frames == 5
    latents = LatentSource(latents_folder())
    assert len(latents) == 4
    z = latents[0]
    assert tuple(z.vision.shape) == (4, 2, 2, 2) and tuple(z.actions.shape) == (4, 10) and z.domain_id == 6
    assert json.loads(z.prompt)["actions"][0]["description"]
    chats = ChatSource(chat_file())
    assert len(chats) == 2 and chats[0][-1]["role"] == "assistant"
