"""A rolling bank of training samples: each rendered sample is used ``reuse`` times.

Rendering a sample (motion through a camera model, an H.264 round trip) costs a data worker
about as much CPU as the network's forward and backward pass on it, on the same two cores. So
the samples are taken in blocks of ``window``: a block's samples are rendered once, kept in the
worker's memory, and served ``reuse`` times, each pass in its own shuffled order; then the next
block replaces it. Every sample is still seen in a different batch each time, and the bank
holds one block (``window`` samples), never the whole run.

Sample ``n`` of the run is a pure function of (seed, n): the same run resumed at step ``s``
continues at sample ``s * batch`` with the same samples in the same order (``order_from``).
With ``reuse`` 1 nothing is kept: every draw is a fresh sample, in that resumable order.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset


class RollingBank(Dataset):
    """``dataset`` served in the order above; index ``n`` is the run's ``n``-th sample.

    ``len`` is ``reuse`` times the dataset's: one "epoch" of the bank draws every sample of the
    dataset ``reuse`` times. Read it in order (``order_from``), with one worker: the cache lives
    in the process that reads it.
    """

    def __init__(self, dataset, window: int = 4096, reuse: int = 2, seed: int = 0):
        if window < 1 or reuse < 1:
            raise ValueError(f"window and reuse must be >= 1, got {window}, {reuse}")
        self.dataset, self.reuse, self.seed = dataset, reuse, seed
        self.window = min(window, len(dataset))
        # Which source a block holds must not depend on where ConcatDataset put it.
        self.order = np.random.default_rng([seed, 0xBA4]).permutation(len(dataset))
        self._block, self._cache = -1, {}

    def __len__(self) -> int:
        return len(self.dataset) * self.reuse

    def source_index(self, n: int) -> int:
        """The dataset index that the run's ``n``-th sample is."""
        n %= len(self)
        per_block = self.window * self.reuse
        block, r = divmod(n, per_block)
        start = block * self.window
        size = min(self.window, len(self.dataset) - start)  # the last block may be short
        passes, j = divmod(r, size)
        perm = np.random.default_rng([self.seed, block, passes]).permutation(size)
        return int(self.order[start + perm[j]])

    def __getitem__(self, n: int):
        if not 0 <= n < len(self):
            raise IndexError(n)
        block = n // (self.window * self.reuse)
        if block != self._block:
            self._block, self._cache = block, {}
        i = self.source_index(n)
        if self.reuse == 1:
            return self.dataset[i]
        if i not in self._cache:
            self._cache[i] = self.dataset[i]
        return self._cache[i]


def order_from(bank: RollingBank, first: int):
    """Indices ``first, first + 1, ...`` of the bank, round and round: a resumable sampler."""

    class _Sampler:
        def __iter__(self):
            n = first
            while True:
                yield n % len(bank)
                n += 1

    return _Sampler()
