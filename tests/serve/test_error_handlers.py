"""The library's input errors raised anywhere in a route answer a 400 naming the field; anything else is the
catch-all's JSON 500 (and the connection lives on)."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cosmos3.actions import ActionError
from cosmos3.media import MediaError
from cosmos3.serve.errors import CatchAll, install_error_handlers
from cosmos3.spec import SettingsError

RAISED = {
    "settings": lambda: SettingsError("num_frames", 0, "a positive integer"),
    "media": lambda: MediaError("clip.mp4", "no video stream"),
    "actions": lambda: ActionError("actions: row 3 holds NaN"),
    "bug": lambda: ValueError("an internal invariant broke"),
}


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{kind}")
    async def boom(kind: str):
        raise RAISED[kind]()

    app.add_middleware(CatchAll)  # as create_app does
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("kind, param", [("settings", "num_frames"), ("media", None), ("actions", None)])
def test_input_errors_are_400s(client, kind, param):
    r = client.get(f"/raise/{kind}")
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_value" and error["param"] == param
    assert str(RAISED[kind]()).splitlines()[0] == error["message"]


def test_other_errors_stay_500s(client):
    r = client.get("/raise/bug")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
