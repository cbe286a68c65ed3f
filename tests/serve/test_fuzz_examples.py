"""Schemathesis past validation: every operation of /openapi.json is called with the document's own examples (so
chats, images and video jobs are really made on the tiny checkpoint) and with schema-conforming and -violating
generated data. Whatever it sends: no 5xx, every error in the OpenAI shape. The figures are printed (pytest -s)."""

from __future__ import annotations

import collections
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from serve_support import LiveServer


@pytest.fixture(scope="module")
def fuzz_server(models, checkpoint, tmp_path_factory):
    from cosmos3.serve import ServerConfig, create_app

    # limits that the document's examples fit (64x64, 2 steps, 5 frames) and that keep random requests cheap
    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path_factory.mktemp("fuzz_examples"),
                          max_queue=4, max_steps=2, max_frames=5, max_pixels=64 * 64, max_images=1,
                          max_model_len=512, default_max_tokens=2, max_prompt_tokens=256, max_upload_bytes=200_000,
                          max_input_pixels=64 * 64)
    with LiveServer(create_app(config, *models)) as live:
        yield live


def test_fuzz_gets_past_validation_without_5xx(fuzz_server):
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    statuses: collections.Counter = collections.Counter()
    created: collections.Counter = collections.Counter()
    failures: list = []
    no_negative: list[str] = []
    started = time.monotonic()

    def call(case) -> None:
        response = case.call(timeout=120)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append((case.method, case.path, response.status_code, response.text[:300]))
        elif response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and {"message", "type", "param", "code"} == set(body["error"]), body
        elif case.method == "POST" and case.path in ("/v1/chat/completions", "/v1/images/generations",
                                                     "/v1/videos", "/v1/videos/sync"):
            created[case.path] += 1

    def run(strategy, examples: int) -> None:
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=strategy)
        def check(case):
            call(case)

        check()

    for operation in operations:
        for strategy in operation.get_strategies_from_examples():  # the document's examples: valid requests
            run(strategy, 2)
        run(operation.as_strategy(generation_mode=GenerationMode.POSITIVE), 40)
        try:
            run(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), 20)
        except Unsatisfiable:  # nothing in its schema can be violated: no parameters, or free-form strings only
            no_negative.append(operation.label)

    # queued jobs finish (or fail cleanly) too: nothing is left in progress by a crash
    deadline = time.monotonic() + 60
    while fuzz_server.state.store.count_active() and time.monotonic() < deadline:
        time.sleep(0.2)
    total = sum(statuses.values())
    ok = sum(n for code, n in statuses.items() if code < 300)
    print(f"\nfuzz: {total} requests in {time.monotonic() - started:.0f} s, {ok} answered 2xx "
          f"(created: {dict(created)}), {sum(n for c, n in statuses.items() if c >= 500)} answered 5xx; "
          f"statuses {dict(sorted(statuses.items()))}")
    assert failures == []
    assert set(no_negative) <= {"GET /health", "GET /v1/models", "GET /v1/videos/{video_id}",
                                "DELETE /v1/videos/{video_id}", "POST /v1/videos/{video_id}/cancel",
                                "GET /v1/videos/{video_id}/events"}, no_negative  # a free-form id: nothing to violate
    assert fuzz_server.state.store.count_active() == 0
    assert not any(row["status"] == "failed" for row in fuzz_server.state.store.list(100)[0]), \
        [row["error"] for row in fuzz_server.state.store.list(100)[0] if row["status"] == "failed"]
    # the examples got past validation: a chat, an image and video jobs were really made
    assert created["/v1/chat/completions"] >= 1 and created["/v1/images/generations"] >= 1
    assert created["/v1/videos"] >= 1 and created["/v1/videos/sync"] >= 1
    assert fuzz_server.thread.is_alive()
