"""The copy_u sum for rows of exactly 16 features (fp32: one cache line per source row), the width
of a GCN's class layer. The generic loop keeps the row in memory and LLVM vectorises it for 32 or
more elements, so at 16 it runs its scalar remainder; here the row lives in 16 named accumulators
(two AVX registers) for the whole in-edge loop: 6.1 -> 4.1 ms on the 10^5 / 10^6 power-law graph at
one thread (benchmarks/bench_dgl.py; DGL 2.1: 2.5-3.5 ms).

    out[v] = d[v] * ( sum_{k in in-edges(v)} x[src[k]]  +  [self_loop and v < len(x)] x[v] )   (/ deg for mean)

Source scales are applied by the caller (x pre-multiplied: one pass over 16 columns), d (length 0
means 1) and the mean here. Same accumulation order as the generic kernels (in-edges in CSR order,
the self term first), so results are bit-identical to them.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._common import PREFETCH_AHEAD, kernel, prefetch

WIDTH = 16


@kernel
def sum_rows16(bounds, indptr, src, x, ds, self_loop, mean, out):
    num_edges = src.shape[0]
    has_ds = ds.shape[0] > 0
    n_x = x.shape[0]
    zero = np.zeros(1, dtype=out.dtype)[0]
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
            b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = zero
            if self_loop and v < n_x:
                a0, a1, a2, a3, a4, a5, a6, a7 = x[v, 0], x[v, 1], x[v, 2], x[v, 3], x[v, 4], x[v, 5], x[v, 6], x[v, 7]
                b0, b1, b2, b3 = x[v, 8], x[v, 9], x[v, 10], x[v, 11]
                b4, b5, b6, b7 = x[v, 12], x[v, 13], x[v, 14], x[v, 15]
            start, end = indptr[v], indptr[v + 1]
            for k in range(start, end):
                if k + PREFETCH_AHEAD < num_edges:
                    prefetch(x, src[k + PREFETCH_AHEAD], 0)
                s = src[k]
                a0 += x[s, 0]
                a1 += x[s, 1]
                a2 += x[s, 2]
                a3 += x[s, 3]
                a4 += x[s, 4]
                a5 += x[s, 5]
                a6 += x[s, 6]
                a7 += x[s, 7]
                b0 += x[s, 8]
                b1 += x[s, 9]
                b2 += x[s, 10]
                b3 += x[s, 11]
                b4 += x[s, 12]
                b5 += x[s, 13]
                b6 += x[s, 14]
                b7 += x[s, 15]
            o = out[v]
            o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7] = a0, a1, a2, a3, a4, a5, a6, a7
            o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15] = b0, b1, b2, b3, b4, b5, b6, b7
            if mean and end > start:
                inv = 1.0 / (end - start)
                for f in range(WIDTH):
                    o[f] *= inv
            if has_ds:
                d = ds[v, 0]
                for f in range(WIDTH):
                    o[f] *= d
