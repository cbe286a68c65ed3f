from pathlib import Path

import pytest

from cosmos3.world import WorldConfig, generate_dataset

from fixture_paths import FIXTURES

FIXTURE = FIXTURES / "droid_lerobot_example"
SEED = 11


def small_config(**kw) -> WorldConfig:
    """A few episodes of each embodiment, with every optional clip, so every file kind exists."""
    defaults = dict(camera_fraction=0.34, violation_fraction=1.0, prefix_fraction=1.0)
    defaults.update(kw)
    return WorldConfig(**defaults)


@pytest.fixture(scope="session")
def world_args() -> dict:
    """Arguments of the shared small run: 6 episodes (4 tabletop, 2 camera)."""
    return {"episodes": 6, "seed": SEED, "config": small_config()}


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory, world_args) -> Path:
    """The shared small run, generated once for the whole session."""
    return generate_dataset(tmp_path_factory.mktemp("world") / "a", progress=False, **world_args)


@pytest.fixture(scope="session")
def droid_fixture() -> Path:
    assert (FIXTURE / "meta" / "info.json").is_file(), f"fixture not found: {FIXTURE}"
    return FIXTURE
