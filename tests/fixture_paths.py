"""Where the fixture files are: the public release's sample files when present, synthetic stand-ins otherwise.

The release's files (never copied into the repo, never modified) are looked for in order at $COSMOS3_FIXTURES and
at `../shared/fixtures` beside the repository (the project layout). Found: FIXTURES is that folder and RELEASE is
True. Not found: FIXTURES is a tree of stand-ins with the same layout, names, formats and shapes, written once per
process by tests/synthetic_fixtures.py into a temporary folder, and RELEASE is False.
COSMOS3_FIXTURES=synthetic uses the stand-ins even when the release's files are there.

Tests that check the release's actual content (not just its layout and shapes) carry `needs_release`.
"""

from __future__ import annotations

import os
from pathlib import Path

from synthetic_fixtures import synthetic_fixtures

REPO = Path(__file__).resolve().parents[1]
HOW_TO_GET = "set COSMOS3_FIXTURES or put them at ../shared/fixtures"


def find_release() -> Path | None:
    """The release's fixture folder, or None. A COSMOS3_FIXTURES that names no such folder is an error."""
    env = os.environ.get("COSMOS3_FIXTURES")
    if env == "synthetic":
        return None
    if env:
        path = Path(env)
        if not (path / "README.md").is_file():
            raise FileNotFoundError(f"COSMOS3_FIXTURES={env}: no release fixtures there (no README.md)")
        return path
    path = REPO.parent / "shared" / "fixtures"
    return path if (path / "README.md").is_file() else None


try:
    RELEASE_FIXTURES, PROBLEM = find_release(), None
except FileNotFoundError as e:  # reported by the pytest header and raised again by every use of FIXTURES
    RELEASE_FIXTURES, PROBLEM = None, str(e)
RELEASE = RELEASE_FIXTURES is not None


def __getattr__(name: str) -> Path:
    # FIXTURES is resolved on first use, so that importing RELEASE or needs_release writes no stand-ins.
    if name == "FIXTURES":
        if PROBLEM:
            raise FileNotFoundError(PROBLEM)
        return RELEASE_FIXTURES if RELEASE_FIXTURES is not None else synthetic_fixtures()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def describe() -> str:
    """One line for pytest's header: which fixtures this run uses."""
    if PROBLEM:
        return f"fixtures: {PROBLEM}"
    if RELEASE:
        return f"fixtures: the release's sample files at {RELEASE_FIXTURES}"
    why = ("COSMOS3_FIXTURES=synthetic" if os.environ.get("COSMOS3_FIXTURES") == "synthetic"
           else "the release's sample files were not found")
    return f"fixtures: synthetic stand-ins ({why}; tests marked needs_release are skipped): {HOW_TO_GET}"


try:
    import pytest
except ImportError:  # benchmarks import this module without pytest
    pass
else:
    needs_release = pytest.mark.skipif(not RELEASE, reason=f"needs the release's sample files: {HOW_TO_GET}")
