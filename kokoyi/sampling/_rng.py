"""Counter-based seeding: every random draw of a sampler comes from a generator seeded by
``(seed, epoch, batch, stream)``, so a batch is the same whichever worker (or how many) computes it.

The four integers are mixed by numpy's ``SeedSequence`` (a hash designed for this), and the result
seeds a fresh CPU ``torch.Generator``.
"""
from __future__ import annotations

import numpy as np
import torch

PRESAMPLE_EPOCH = -1      # epoch number used for GraphSAINT's pre-sampling
SHUFFLE_BATCH = -1        # batch number used for an epoch's shuffle


def generator(seed: int, epoch: int, batch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by ``(seed, epoch, batch, stream)`` only."""
    words = [int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, int(batch) & 0xFFFFFFFF, int(stream) & 0xFFFFFFFF]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return g


def rand(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` uniforms in [0, 1) (float64, so that ``floor(u * d)`` is exact for any degree d)."""
    return torch.rand(n, generator=gen, dtype=torch.float64)


def randint_below(high: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One uniform integer in ``[0, high_i)`` per entry of the int64 tensor ``high`` (``high_i >= 1``)."""
    r = (rand(high.numel(), gen) * high.to(torch.float64)).to(torch.int64)
    return torch.minimum(r, high - 1)
