"""Fixtures of the server tests; they live in serve_support.py so test modules can import its helpers by a
name no other conftest shares."""

from serve_support import *  # noqa: F401,F403 (pytest collects the fixtures from this namespace)
from serve_support import checkpoint, client, media_dir, models, server  # noqa: F401
