import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


SHAPES = [(4, 6, 10), (3, 8, 5, 4), (2, 4, 3, 4, 2)]  # 1-D, 2-D and 3-D spatial
