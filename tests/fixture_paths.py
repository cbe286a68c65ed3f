"""Where the release's fixture files are (never copied into the repo, never modified).

In order: $COSMOS3_FIXTURES; `../shared/fixtures` beside the repository (the project layout); the workplace's
shared folder `/work/shared/fixtures` (a clean clone elsewhere, e.g. under /tmp, has no `../shared`).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [Path(p) for p in (os.environ.get("COSMOS3_FIXTURES"),) if p] + [
    REPO.parent / "shared" / "fixtures",
    Path("/work/shared/fixtures"),
]


def find_fixtures() -> Path:
    for path in CANDIDATES:
        if (path / "README.md").is_file():
            return path
    raise FileNotFoundError(f"release fixtures not found; looked in {[str(p) for p in CANDIDATES]} "
                            "(set COSMOS3_FIXTURES)")


FIXTURES = find_fixtures()
