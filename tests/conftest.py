import os
import random

import numpy as np
import pytest
import torch

from seeding import ENV, SESSION_SEED, seed_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def seed(request) -> int:
    """This test's seed: from the session seed (COSMOS3_TEST_SEED replays it) and the test's node id."""
    value = seed_for(request.node.nodeid, "seed fixture")
    print(f"random seed: {value} ({ENV}={SESSION_SEED})")
    return value


@pytest.fixture(autouse=True)
def _seeded_global_rngs(request):
    """Python's, numpy's and torch's global generators start from the test's own seed: a draw made without a
    generator (torch.randn, np.random.randint, random.random) replays under COSMOS3_TEST_SEED too."""
    value = seed_for(request.node.nodeid, "global generators")
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Every failing test's report names the session seed that replays it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("random seed", f"replay: {ENV}={SESSION_SEED} pytest '{item.nodeid}'"))


@pytest.fixture
def rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture
def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pytest_report_header(config) -> list[str]:
    """The session seed; the release's fixture files or synthetic stand-ins, and what to set to get the former."""
    from fixture_paths import describe

    return [f"random seed: {ENV}={SESSION_SEED}", describe()]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """When this run wrote the synthetic stand-ins: how long it took, and (-q hides the header) what to set."""
    import fixture_paths
    from synthetic_fixtures import generation_seconds

    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(f"random seed of this run: {ENV}={SESSION_SEED} replays it")
    took = generation_seconds()
    if took is not None:
        tail = "" if fixture_paths.RELEASE else f"; for the release's sample files {fixture_paths.HOW_TO_GET}"
        terminalreporter.write_line(f"fixtures: synthetic stand-ins written in {took:.1f} s{tail}")
