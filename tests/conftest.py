"""Shared test setup: one torch thread per test process (the models are tiny, and pytest-xdist
already runs one process per core; oversubscribed threads made steps 20x slower)."""

import torch

torch.set_num_threads(1)
