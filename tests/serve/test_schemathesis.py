"""Property-based fuzzing of every operation in /openapi.json (schemathesis): whatever it sends, no 5xx, and every
error is in the OpenAI shape. Tight server limits keep each generated request cheap."""

from __future__ import annotations

import pytest

import schemathesis
from hypothesis import HealthCheck, given, settings  # noqa: E402

from serve_support import LiveServer  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_server(models, checkpoint, tmp_path_factory):
    from cosmos3.serve import ServerConfig, create_app

    config = ServerConfig(checkpoint=str(checkpoint), storage=tmp_path_factory.mktemp("fuzz"), max_queue=2,
                          max_steps=2, max_frames=5, max_pixels=64 * 64, max_images=1, max_model_len=128,
                          default_max_tokens=2, max_upload_bytes=200_000)
    with LiveServer(create_app(config, *models)) as live:
        yield live


def test_no_server_errors(fuzz_server):
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(timeout=60)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and {"message", "type", "param", "code"} == set(body["error"]), body

        check()
    assert fuzz_server.state.store is not None and fuzz_server.thread.is_alive()
