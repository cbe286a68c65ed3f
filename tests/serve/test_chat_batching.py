"""Continuous batching through the live server: concurrent chat requests share decode steps and each gets exactly
the answer it gets alone; a client that goes away mid-stream frees its row."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx


def test_concurrent_requests_decode_together_and_exactly(server, models, monkeypatch):
    reasoner = models[1]
    cases = [("Describe the scene.", 12), ("What moves?", 20), ("Count the blocks, please.", 7), ("Why?", 16)]
    alone = [reasoner.chat([{"role": "user", "content": q}], max_tokens=n, temperature=0) for q, n in cases]
    batcher = server.state.batcher
    # Overlap made certain: the first admission waits (bounded) until every request is queued, so the others join
    # while the first still decodes (each asks for 7 tokens or more), however the threads are scheduled.
    real_submit, real_admit = batcher.submit, batcher._admit
    all_queued, lock, queued = threading.Event(), threading.Lock(), []

    def submit(req):
        real_submit(req)
        with lock:
            queued.append(req)
            if len(queued) == len(cases):
                all_queued.set()

    def admit(admitted):
        if admitted:
            all_queued.wait(30)
        real_admit(admitted)

    monkeypatch.setattr(batcher, "submit", submit)
    monkeypatch.setattr(batcher, "_admit", admit)
    steps0, tokens0 = batcher.steps, batcher.batched_tokens

    def ask(case):
        q, n = case
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": q}], "max_tokens": n,
                                                     "temperature": 0})
            assert r.status_code == 200, r.text
            return r.json()

    with ThreadPoolExecutor(len(cases)) as pool:
        answers = list(pool.map(ask, cases))
    for got, ref in zip(answers, alone):
        assert got["choices"][0]["message"]["content"] == ref.text
        assert got["choices"][0]["finish_reason"] == ref.finish_reason
        assert got["usage"] == ref.usage
    assert all_queued.is_set()
    steps, tokens = batcher.steps - steps0, batcher.batched_tokens - tokens0
    assert tokens > steps, (tokens, steps)  # on average more than one row per decode step


def test_stream_disconnect_frees_the_row(server):
    batcher = server.state.batcher
    body = {"messages": [{"role": "user", "content": "Talk."}], "max_tokens": 400, "stream": True,
            "ignore_eos": True}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["object"] == "chat.completion.chunk"
        deadline = time.monotonic() + 20
        while batcher.active:  # the row is released at the next step after the disconnect
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Again?"}],
                                                 "max_tokens": 3})
        assert r.status_code == 200


def test_think_splitter_and_thinking_requests(server):
    from cosmos3.decode import ThinkSplitter

    split = ThinkSplitter(True)
    pieces = [p for d in ("<think>\nfirst ", "ideas</th", "ink>\n\nThe answer", ".") for p in split.push(d)]
    pieces += split.flush()
    assert "".join(t for k, t in pieces if k == "reasoning_content") == "\nfirst ideas"
    assert "".join(t for k, t in pieces if k == "content") == "The answer."
    body = {"messages": [{"role": "user", "content": "Why?"}], "max_tokens": 3,
            "chat_template_kwargs": {"enable_thinking": True}}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/v1/chat/completions", json=body).status_code == 200
        with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"


def test_requests_admitted_together_prefill_together_and_a_broken_one_fails_alone(models):
    """Requests waiting at the same moment are prefilled in one forward; a prompt that breaks that forward is
    found by retrying one by one: it alone gets an error, the others their exact answers."""
    import asyncio
    import dataclasses

    from cosmos3.sampling import PLAIN
    from cosmos3.serve.queues.batcher import ChatBatcher, ChatRequest

    reasoner = models[1]
    questions = [("Describe the scene.", 9), ("Why?", 5), ("Count the blocks, please.", 7)]
    alone = [reasoner.chat([{"role": "user", "content": q}], max_tokens=n, temperature=0) for q, n in questions]
    calls = []
    real = reasoner.prefill_batch

    def counting(prompts, cache):
        calls.append(len(prompts))
        return real(prompts, cache)

    async def run():
        batcher = ChatBatcher(reasoner, max_batch=4, max_model_len=256)
        reqs = [ChatRequest(reasoner.build_prompt([{"role": "user", "content": q}]),
                            PLAIN.replace(max_tokens=n, temperature=0.0)) for q, n in questions]
        good = reqs[0].prompt
        broken = dataclasses.replace(good, input_ids=good.input_ids.clone())
        broken.input_ids[-1] = reasoner.model.config.vocab_size + 5  # no such token: the embedding lookup fails
        reqs.insert(1, ChatRequest(broken, PLAIN.replace(max_tokens=4, temperature=0.0)))
        for r in reqs:  # all waiting before the loop starts: one admission round
            batcher.submit(r)
        reasoner.prefill_batch = counting
        batcher.start()
        try:
            results = []
            for r in reqs:
                while True:
                    kind, value = await asyncio.wait_for(r.events.get(), 60)
                    if kind != "delta":
                        results.append((kind, value))
                        break
            return results
        finally:
            batcher.stop()
            del reasoner.prefill_batch

    results = asyncio.run(run())
    assert calls[0] == 4 and calls[1:] == [1, 1, 1, 1], calls  # the group, then each alone
    assert results[1][0] == "error"
    for (kind, out), ref in zip([results[0], results[2], results[3]], alone):
        assert kind == "done" and out.text == ref.text and out.usage == ref.usage


def test_a_request_whose_sampling_fails_ends_alone(models):
    """A repetition penalty of 1e-300 that slipped past validation overflows every logit: that request gets its own
    error while the requests decoding beside it get exactly their answers alone (before, one such request failed
    the whole step)."""
    import asyncio
    import dataclasses

    from cosmos3.sampling import PLAIN, SamplingError
    from cosmos3.serve.queues.batcher import ChatBatcher, ChatRequest

    reasoner = models[1]
    questions = [("Describe the scene.", 9), ("Why?", 6)]
    alone = [reasoner.chat([{"role": "user", "content": q}], max_tokens=n, temperature=0) for q, n in questions]

    async def run():
        batcher = ChatBatcher(reasoner, max_batch=4, max_model_len=256)
        reqs = [ChatRequest(reasoner.build_prompt([{"role": "user", "content": q}]),
                            PLAIN.replace(max_tokens=n, temperature=0.0)) for q, n in questions]
        reqs.insert(1, ChatRequest(reasoner.build_prompt([{"role": "user", "content": "Hmm?"}]),
                                   dataclasses.replace(PLAIN, max_tokens=8, temperature=0.8,
                                                       repetition_penalty=1e-300, seed=1)))
        for r in reqs:
            batcher.submit(r)
        batcher.start()
        try:
            results = []
            for r in reqs:
                while (event := await asyncio.wait_for(r.events.get(), 60))[0] == "delta":
                    pass
                results.append(event)
            return results
        finally:
            batcher.stop()

    results = asyncio.run(run())
    assert results[1][0] == "error" and isinstance(results[1][1], SamplingError)
    assert "non-finite" in str(results[1][1])
    for (kind, out), ref in zip([results[0], results[2]], alone):
        assert kind == "done" and out.text == ref.text and out.usage == ref.usage


def test_server_reasoner_ends_turns_at_the_checkpoint_generation_config(checkpoint, tmp_path):
    import json
    import shutil

    from cosmos3.serve.runtime import load_models

    root = tmp_path / "ckpt"
    shutil.copytree(checkpoint, root)
    plain = load_models(root, "cpu")[1]
    assert plain.end_of_turn == plain.tokenizer.eos_ids
    (root / "generation_config.json").write_text(json.dumps({"eos_token_id": [5, 258]}))
    assert load_models(root, "cpu")[1].end_of_turn == (5, 258)
