"""Data plumbing: the sharded sampler (deterministic, process-count independent, resumable), micro-batch
grouping under a token budget, chat label masks, caption format, and the data sources on tiny inputs."""

import json
from types import SimpleNamespace

import pytest
import torch

from cosmos3.train.batch import group, prepare_chat
from cosmos3.train.chat import ChatSource
from cosmos3.train.data import (Encoder, LatentSource, ShardedSampler, VideoFolderSource, action_caption,
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


def test_chat_turns_join_questions_about_the_same_media_and_label_every_answer(tmp_path, rng):
    from cosmos3.model.vision import VisionProcessor
    from cosmos3.reasoner import Reasoner
    from cosmos3.tokenizers import TextTokenizer

    def media(name, start=None):
        part = {"type": "video_url", "video_url": {"url": f"{name}.mp4"}}
        if start is not None:  # another part of the same file: other media
            part["video_url"]["start"] = start
        return part

    def single(part, q, a):
        return {"messages": [{"role": "user", "content": [part, {"type": "text", "text": q}]},
                             {"role": "assistant", "content": a}]}

    sources = [("a", None), ("a", 0.5), ("b", None)]
    lines = [single(media(*src), f"q{n}-{k}?", f"a{n}-{k}") for n, src in enumerate(sources)
             for k in range(rng.randint(1, 7))]
    rng.shuffle(lines)
    others = [{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yo."}]},
              {"messages": [{"role": "user", "content": [media("a"), {"type": "text", "text": "x?"}]},
                            {"role": "assistant", "content": "y"}, {"role": "user", "content": "z?"},
                            {"role": "assistant", "content": "w"}]}]
    for other in others:  # conversations of other shapes stay as they are
        lines.insert(rng.randint(0, len(lines)), other)
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    turns = rng.randint(2, 4)
    joined = ChatSource(path, turns=turns, seed=rng.randrange(1000))
    assert len(ChatSource(path)) == len(lines)
    resolved = [ChatSource(path)[lines.index(o)] for o in others]
    pairs, counts = [], {}
    for conv in joined:
        if conv in resolved:
            continue
        users, answers = conv[0::2], conv[1::2]
        assert 1 <= len(users) <= turns and all(m["role"] == "assistant" for m in answers)
        first = [p for p in users[0]["content"] if p["type"] == "video_url"]
        assert len(first) == 1 and all(isinstance(u["content"], str) for u in users[1:])  # the media given once
        key = (first[0]["video_url"]["url"].rsplit("/", 1)[-1], first[0]["video_url"].get("start"))
        counts[key] = counts.get(key, 0) + 1
        for u, a in zip(users, answers):
            pairs.append((key, u["content"] if isinstance(u["content"], str) else u["content"][-1]["text"],
                          a["content"]))
    assert sum(conv in resolved for conv in joined) == 2
    expected = [((f"{name}.mp4", start), line["messages"][0]["content"][1]["text"], line["messages"][1]["content"])
                for line in lines if line not in others
                for name, start in [(line["messages"][0]["content"][0]["video_url"]["url"][0],
                                     line["messages"][0]["content"][0]["video_url"].get("start"))]]
    assert sorted(pairs, key=str) == sorted(expected, key=str)  # every question once, with its media and answer
    sizes = {}
    for key, _, _ in expected:
        sizes[key] = sizes.get(key, 0) + 1
    assert counts == {key: -(-n // turns) for key, n in sizes.items()}

    tok = TextTokenizer.from_pretrained(tiny_checkpoint() / "text_tokenizer")
    reasoner = Reasoner(SimpleNamespace(config=SimpleNamespace(vocab_size=300)), tok, None, VisionProcessor())
    longest = max((c for c in joined if c not in resolved), key=len)
    text_only = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
                  m["content"][-1]["text"]} for m in longest]  # the labels, without decoding a clip
    s = prepare_chat(text_only, reasoner, 4096)
    labelled = tok.decode(s.input_ids[s.labels].tolist(), skip_special_tokens=False)
    assert labelled == "".join(m["content"] + "<|im_end|>" for m in text_only[1::2])
    with pytest.raises(ValueError, match="data.chat_turns must be >= 1"):
        ChatSource(path, turns=0)
