import os
import random

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def seed() -> int:
    """A fresh seed per test run (printed on failure through the test id's captured output)."""
    value = random.SystemRandom().randrange(2**31)
    print(f"random seed: {value}")
    return value


@pytest.fixture
def rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture
def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pytest_report_header(config) -> str:
    """One line: the release's fixture files or synthetic stand-ins, and what to set to get the former."""
    from fixture_paths import describe

    return describe()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """When this run wrote the synthetic stand-ins: how long it took, and (-q hides the header) what to set."""
    import fixture_paths
    from synthetic_fixtures import generation_seconds

    took = generation_seconds()
    if took is not None:
        tail = "" if fixture_paths.RELEASE else f"; for the release's sample files {fixture_paths.HOW_TO_GET}"
        terminalreporter.write_line(f"fixtures: synthetic stand-ins written in {took:.1f} s{tail}")
