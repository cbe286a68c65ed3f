"""The decode engine (cosmos3.decode) on a tiny random reasoner.

Rows are checked against an independent oracle (the whole sequence recomputed without a KV cache at every token,
same sampler): one row, and a batch of rows with different sampling parameters joining at different times, give
exactly the tokens each gets alone. A row whose sampling fails (temperature 1e-300, NaN logits) ends alone with an
error; its neighbours finish as they would alone, and the next request in its cache row is not poisoned. The text
layer (stop strings, the <think> split) holds back partial tags and stop strings across token boundaries; the
end-of-turn ids come from generation_config.json.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cosmos3.checkpoint import save_transformer
from cosmos3.config import get_preset
from cosmos3.decode import (DecodeEngine, TextStream, ThinkSplitter, end_of_turn_ids, find_stop, held_back,
                            split_reasoning)
from cosmos3.model import Cosmos3Omni
from cosmos3.model.vision import VisionProcessor
from cosmos3.reasoner import Reasoner
from cosmos3.sampling import PLAIN, Sampler, SamplingError, SamplingParams
from cosmos3.tokenizers import byte_level_tokenizer

from reasoner_oracle import randomize_weights


def _tiny_model(vocab: int, seed: int = 0) -> Cosmos3Omni:
    """Two layers, random weights scaled so the logits are far from uniform (sampling then depends on them)."""
    cfg = get_preset("tiny").replace(vocab_size=vocab)
    gen = torch.Generator().manual_seed(seed)
    model = Cosmos3Omni(cfg, with_gen=False)
    randomize_weights(model, gen, norm_spread=0.3)
    return model.eval()


@pytest.fixture(scope="module")
def rsn():
    tok = byte_level_tokenizer()
    return Reasoner(_tiny_model(len(tok)), tok, None, VisionProcessor())


QUESTIONS = ["Why does the ball fall?", "Hi", "Count the red blocks on the table, please.", "What moves first?"]
PARAMS = [PLAIN.replace(temperature=0.0, presence_penalty=0.0, max_tokens=9),
          PLAIN.replace(temperature=0.9, top_p=0.8, top_k=0, presence_penalty=0.0, seed=7, max_tokens=12),
          PLAIN.replace(temperature=1.2, top_k=5, repetition_penalty=1.3, seed=11, max_tokens=6),
          PLAIN.replace(temperature=0.7, presence_penalty=1.5, seed=3, max_tokens=10)]


@torch.no_grad()
def _oracle(rsn: Reasoner, prompt, params: SamplingParams) -> list[int]:
    """No cache, no engine: the full sequence through the network for every token, the same sampler and stop rule
    (end of turn or max_tokens)."""
    model = rsn.model
    ids = prompt.input_ids.tolist()
    sampler = Sampler(params, model.config.vocab_size, prompt.input_ids)
    out: list[int] = []
    while len(out) < params.max_tokens:
        n = len(ids)
        positions = torch.cat([prompt.positions, torch.arange(n - prompt.input_ids.shape[0], dtype=torch.float32)
                               .add(prompt.input_ids.shape[0] + prompt.rope_delta).expand(3, -1)], dim=1)
        hidden = model.und_forward(model.embed_tokens(torch.tensor([ids])), positions)
        token = sampler(model.logits(hidden[0, -1]))
        sampler.update(token)
        out.append(token)
        ids.append(token)
        if token in rsn.end_of_turn and not params.ignore_eos:
            break
    return out


def _drain(engine: DecodeEngine) -> None:
    while engine.active:
        engine.step()


def test_one_row_equals_chat_and_the_uncached_oracle(rsn):
    for q, params in zip(QUESTIONS, PARAMS):
        prompt = rsn.build_prompt(q)
        want = _oracle(rsn, prompt, params)
        out = rsn.chat(q, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                       top_k=params.top_k, presence_penalty=params.presence_penalty,
                       repetition_penalty=params.repetition_penalty, seed=params.seed)
        assert out.token_ids == want
        engine = DecodeEngine(rsn, 3, 256)  # one row in a wider engine, not in cache row 0
        engine.rows[0] = engine.rows[1] = object()  # taken: the row lands in cache row 2
        row = engine.row(prompt, params)
        engine.prefill([row])
        engine.rows[0] = engine.rows[1] = None
        _drain(engine)
        assert row.index == 2 and row.output.token_ids == want and row.output.raw_text == out.raw_text
        assert row.output.usage == out.usage and row.output.finish_reason == out.finish_reason


def test_rows_with_different_sampling_decode_together_exactly_as_alone(rsn):
    prompts = [rsn.build_prompt(q) for q in QUESTIONS]
    alone = [rsn.chat(q, max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
                      presence_penalty=p.presence_penalty, repetition_penalty=p.repetition_penalty, seed=p.seed)
             for q, p in zip(QUESTIONS, PARAMS)]
    engine = DecodeEngine(rsn, 4, 128)
    rows = [engine.row(pr, pa) for pr, pa in zip(prompts, PARAMS)]
    engine.prefill(rows[:2])  # two start together (in place, rows 0-1)
    engine.step()
    engine.step()
    engine.prefill(rows[2:3])  # one joins two steps later
    for _ in range(7):  # row 0 (9 tokens) finishes, freeing cache row 0
        engine.step()
    assert rows[0].done and engine.rows[0] is None and engine.rows[3] is None
    engine.prefill(rows[3:])  # into the row the finished request left
    _drain(engine)
    assert engine.steps > 0 and engine.decoded > engine.steps  # more than one row per step on average
    for row, ref in zip(rows, alone):
        assert row.output.token_ids == ref.token_ids
        assert (row.output.raw_text, row.output.usage, row.output.finish_reason) == \
            (ref.raw_text, ref.usage, ref.finish_reason)


def test_non_contiguous_free_rows_prefill_through_a_scratch_cache(rsn):
    prompts = [rsn.build_prompt(q) for q in QUESTIONS[:3]]
    params = PARAMS[0]
    engine = DecodeEngine(rsn, 3, 128)
    taken = object()
    engine.rows[1] = taken
    rows = [engine.row(p, params) for p in prompts[:2]]
    engine.prefill(rows)  # cache rows 0 and 2
    engine.rows[1] = None
    assert [r.index for r in rows] == [0, 2]
    _drain(engine)
    for row, p in zip(rows, prompts):
        assert row.output.token_ids == _oracle(rsn, p, params)


class _Poison:
    """Wraps the network: at decode step `at`, row `index`'s logits become NaN and its cache row's values too
    (what a NaN in the network would leave behind)."""

    def __init__(self, rsn, index: int, at: int):
        self.rsn, self.index, self.at, self.calls = rsn, index, at, 0
        self.model, self.tokenizer, self.end_of_turn = rsn.model, rsn.tokenizer, rsn.end_of_turn

    def prefill_batch(self, prompts, cache):
        return self.rsn.prefill_batch(prompts, cache)

    def decode_batch(self, tokens, slots, deltas, cache):
        logits = self.rsn.decode_batch(tokens, slots, deltas, cache)
        self.calls += 1
        if self.calls == self.at:
            logits[self.index] = float("nan")
            for v in cache.values:
                v[self.index] = float("nan")
        return logits


def test_a_poisoned_row_ends_alone_with_an_error(rsn):
    # parameters that slipped past validation (dataclasses.replace does not validate): logits overflow to inf
    bad = [dataclasses.replace(PLAIN, temperature=0.8, repetition_penalty=1e-300, seed=2, max_tokens=8),
           dataclasses.replace(PLAIN, temperature=0.8, presence_penalty=-1e300, seed=3, max_tokens=8)]
    good = [PARAMS[0], PARAMS[1]]
    alone = [_oracle(rsn, rsn.build_prompt(q), p) for q, p in zip(QUESTIONS[:2], good)]
    for poison in bad:
        engine = DecodeEngine(rsn, 3, 128)
        rows = [engine.row(rsn.build_prompt(QUESTIONS[0]), good[0]), engine.row(rsn.build_prompt("Hmm?"), poison),
                engine.row(rsn.build_prompt(QUESTIONS[1]), good[1])]
        engine.prefill(rows)
        _drain(engine)
        broken = rows[1].output
        assert broken.finish_reason == "error" and isinstance(rows[1].error, SamplingError)
        assert "non-finite" in broken.error
        assert [rows[0].output.token_ids, rows[2].output.token_ids] == alone
    with pytest.raises(ValueError, match="repetition_penalty"):  # validated: refused before any work
        rsn.chat("Hmm?", repetition_penalty=1e-300, max_tokens=4)
    # a vanishing temperature is its limit, greedy decoding, not an overflow
    assert (rsn.chat("Hmm?", temperature=1e-300, max_tokens=4).token_ids
            == rsn.chat("Hmm?", temperature=0, max_tokens=4).token_ids)

    # NaN from the network mid-decode: that row ends, the others go on; the next request in its cache row is exact.
    net = _Poison(rsn, index=1, at=3)
    engine = DecodeEngine(net, 3, 128)
    greedy = dataclasses.replace(good[0], ignore_eos=True)  # every row is still decoding at the poisoned step
    rows = [engine.row(rsn.build_prompt(q), greedy) for q in QUESTIONS[:3]]
    engine.prefill(rows)
    for _ in range(3):
        engine.step()
    assert rows[1].done and rows[1].output.finish_reason == "error" and len(rows[1].output.token_ids) == 3
    assert not rows[0].done and not rows[2].done
    later = engine.row(rsn.build_prompt(QUESTIONS[3]), greedy)
    engine.prefill([later])
    assert later.index == 1
    _drain(engine)
    for row, q in zip(rows[:1] + rows[2:] + [later], QUESTIONS[:1] + QUESTIONS[2:]):
        assert row.output.finish_reason != "error"
        assert row.output.token_ids == _oracle(rsn, rsn.build_prompt(q), greedy)


# ------------------------------------------------------------------------------------------ the text layer


def test_held_back_and_find_stop():
    assert held_back("abc </th", ("</think>",)) == 4
    assert held_back("abc <", ("<think>", "</think>")) == 1
    assert held_back("abc", ("</think>",)) == 0
    assert held_back("xx st", ("stop", "xx sto")) == 5  # the longer pattern's beginning wins
    assert held_back("</think>", ("</think>",)) == 0  # complete: not a partial tag
    assert find_stop("abcabc", ("bc",), 2) == 4 and find_stop("abc", ("x",), 0) is None


def _push_all(stream: TextStream, tok, text: str) -> tuple[list[str], str]:
    deltas = [stream.push(t) for t in tok.encode(text)]
    deltas.append(stream.close())
    return [d for d in deltas if d], stream.text


FULL = "héllo wörld 🌍 end"


@pytest.mark.parametrize("stop,expected", [(("wö",), "héllo "), (("ö w",), FULL), (("llo wö", "lo"), "hél"),
                                           (("rld",), "héllo wö"), (("🌍",), "héllo wörld "), (("d 🌍 e",), "héllo wörl")])
def test_text_stream_stop_strings_across_token_boundaries(stop, expected):
    tok = byte_level_tokenizer()  # one token per byte: every multi-byte character spans tokens
    stream = TextStream(tok, stop)
    deltas, text = _push_all(stream, tok, FULL)
    assert "".join(deltas) == text == expected
    assert stream.stopped == (expected != FULL)
    assert all("\ufffd" not in d for d in deltas)
    # nothing that could begin a stop string was ever sent ahead of it
    sent = ""
    for d in deltas:
        sent += d
        assert expected.startswith(sent)


def test_text_stream_releases_a_false_start_and_flushes_at_the_end():
    tok = byte_level_tokenizer()
    stream = TextStream(tok, ("stop!",))
    got = [stream.push(t) for t in tok.encode("a sto")]
    assert "".join(got) == "a "  # "sto" may still become "stop!"
    assert stream.push(tok.encode("p")[0]) == "" and stream.push(tok.encode("?")[0]) == "stop?"
    assert stream.close() == "" and not stream.stopped


@pytest.mark.parametrize("deltas", [["<think>\nfirst ", "ideas</th", "ink>\n\nThe answer", "."],
                                    ["<thi", "nk>\nfirst ideas<", "/think>", "\n\n", "The answer."],
                                    list("<think>\nfirst ideas</think>\n\nThe answer.")])
def test_think_splitter_holds_back_partial_tags(deltas):
    split = ThinkSplitter(True)
    pieces = [p for d in deltas for p in split.push(d)] + split.flush()
    assert "".join(t for k, t in pieces if k == "reasoning_content") == "\nfirst ideas"
    assert "".join(t for k, t in pieces if k == "content") == "The answer."
    assert all("<" not in t for _, t in pieces)  # no piece of a tag reached the client


def test_think_splitter_releases_text_that_only_looked_like_a_tag():
    split = ThinkSplitter(True)
    pieces = split.push("a <th") + split.push("ing> b <") + split.push("/tag") + split.flush()
    assert "".join(t for _, t in pieces) == "a <thing> b </tag" and {k for k, _ in pieces} == {"reasoning_content"}
    plain = ThinkSplitter(False)
    assert plain.push("<think>x") == [("content", "<think>x")]
    assert split_reasoning("<think>a</think>b") == ("a", "b")


# ------------------------------------------------------------------------------------------ end of turn


def test_end_of_turn_ids_from_generation_config(tmp_path):
    tok = byte_level_tokenizer()
    assert end_of_turn_ids(tmp_path, tok.eos_ids, 282) == tok.eos_ids  # no file: the tokenizer's
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, 256]}))
    assert end_of_turn_ids(tmp_path, (1,), 282) == (258, 256)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 7, "top_k": 20}))
    assert end_of_turn_ids(tmp_path, (1,), 282) == (7,)
    (tmp_path / "generation_config.json").write_text(json.dumps({"top_k": 20}))  # no eos: the fallback
    assert end_of_turn_ids(tmp_path, (1,), 282) == (1,)
    for bad in ('{"eos_token_id": [999]}', '{"eos_token_id": "x"}', "[1, 2]", "{not json"):
        (tmp_path / "generation_config.json").write_text(bad)
        with pytest.raises(ValueError, match="generation_config.json"):
            end_of_turn_ids(tmp_path, (1,), 282)


def test_from_pretrained_stops_at_the_checkpoint_end_of_turn(rsn, tmp_path):
    """A checkpoint whose generation_config.json names the 3rd greedy token as end of turn: chat stops there."""
    save_transformer(rsn.model, tmp_path / "transformer")
    rsn.tokenizer.save_pretrained(tmp_path / "text_tokenizer")
    greedy = dict(temperature=0, presence_penalty=0.0, max_tokens=12)
    loaded = Reasoner.from_pretrained(tmp_path)
    assert loaded.end_of_turn == rsn.tokenizer.eos_ids
    free = loaded.chat("Why does the ball fall?", **greedy)
    third = free.token_ids[2]
    assert third not in free.token_ids[:2]  # (this model and prompt: the first stop is the third token)
    (tmp_path / "text_tokenizer" / "generation_config.json").write_text(json.dumps({"eos_token_id": [third]}))
    stopped = Reasoner.from_pretrained(tmp_path).chat("Why does the ball fall?", **greedy)
    assert stopped.token_ids == free.token_ids[:3] and stopped.finish_reason == "stop"
