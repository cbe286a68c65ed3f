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
