"""The gather-sum at the heart of copy_u sum/mean and the scaled (GCN) sum, with the row held in
SIMD registers:

    out[v] = d[v] * ( [self_loop and v < len(x)] x[v]  +  sum_{k = indptr[v]}^{indptr[v+1]-1} x[src[k]] )
             (divided by the in-degree for mean)

for rows whose width is a whole number of 64-byte vectors (16 fp32 / 8 fp64 elements). LLVM does not
keep a numba loop's accumulator row in registers (it cannot prove `out` and `x` apart, so every edge
loads and stores the row; at runtime widths the loop also carries alias checks and a scalar tail),
so the edge loop is written once in LLVM IR (`_gather_sum`, a numba intrinsic): per edge one index
load, the source row's vectors added into 1 or 4 vector accumulators (4 x 64 B: 64 fp32 features),
and a prefetch of the row PREFETCH_AHEAD edges ahead. Wider rows take several column blocks, each a
sweep over the row's edges.

The arithmetic is the generic loop's, lane by lane: the accumulator starts at the self row (or 0),
adds the in-edges' rows in CSR order with plain IEEE adds (no reassociation), then d and the mean
scale as before; results are bit-identical to _copy_sum_rows / _scaled_rows and to themselves for
any thread count. A per-source scale s (GCN's 1/sqrt(deg)) multiplies each gathered row before its
add (a multiply then an add, never fused: the rounding of the pre-scaled x the generic path builds),
so gspmm_scaled needs no scaled copy of x. Measured (1 thread, 10^5 / 10^6 power law, 64 fp32 features, loaded machine, CPU
time): 11.9 ms for the generic numba loop, 5-6 ms here (a C++ AVX-512 loop of the same shape: 5.0 ms).
"""
from __future__ import annotations

from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._common import PREFETCH_AHEAD, kernel

VECTOR_BYTES = 64
BLOCK = 4  # vectors per column block: 4 accumulators (a 64-feature fp32 row in one sweep)


def fits(width: int, itemsize: int) -> bool:
    """Can a row of `width` elements of `itemsize` bytes take the vector kernel?"""
    return width > 0 and (width * itemsize) % VECTOR_BYTES == 0


def _make_gather_sum(nvec: int, scaled: bool):
    @intrinsic
    def gather_sum(typingctx, x, src, start, end, self_row, out, v, col, scale):
        """out[v, col:col + nvec*L] = (x[self_row, cols] if self_row >= 0 else 0)
        + sum_{k=start}^{end-1} x[src[k], cols], L = 64 bytes / itemsize; with `scaled`, every row
        x[r] enters as x[r] * scale[r] (a multiply, then the add: the rounding of a pre-scaled x).
        Rows of x and out must be contiguous (column stride = itemsize); any row stride."""
        if not (isinstance(x, types.Array) and isinstance(out, types.Array) and x.ndim == 2
                and out.ndim == 2 and x.dtype == out.dtype and isinstance(x.dtype, types.Float)
                and isinstance(src, types.Array) and src.ndim == 1
                and isinstance(src.dtype, types.Integer) and isinstance(scale, types.Array)
                and scale.ndim == 1 and scale.dtype == x.dtype):
            return None
        sig = types.void(x, src, start, end, self_row, out, v, col, scale)

        def codegen(context, builder, sig, args):
            xty, sty, oty = sig.args[0], sig.args[1], sig.args[5]
            xa = context.make_array(xty)(context, builder, args[0])
            sa = context.make_array(sty)(context, builder, args[1])
            oa = context.make_array(oty)(context, builder, args[5])
            intp = context.get_value_type(types.intp)

            def as_intp(i):
                return context.cast(builder, args[i], sig.args[i], types.intp)

            start_, end_, self_, v_, col_ = (as_intp(i) for i in (2, 3, 4, 6, 7))
            elt = context.get_value_type(xty.dtype)
            size = context.get_abi_sizeof(elt)
            vec = ir.VectorType(elt, VECTOR_BYTES // size)
            i8p = ir.IntType(8).as_pointer()
            col_bytes = builder.mul(col_, ir.Constant(intp, size))

            def vec_ptr(ary, row, j):
                base = builder.bitcast(ary.data, i8p)
                stride = builder.extract_value(ary.strides, 0)
                off = builder.add(builder.mul(row, stride),
                                  builder.add(col_bytes, ir.Constant(intp, VECTOR_BYTES * j)))
                return builder.gep(base, [off])

            sca = context.make_array(sig.args[8])(context, builder, args[8])
            i32 = ir.IntType(32)

            def load_row(row, j):
                """Vector j of x[row] (times scale[row] when scaled)."""
                ptr = builder.bitcast(vec_ptr(xa, row, j), vec.as_pointer())
                value = builder.load(ptr, align=size)
                if not scaled:
                    return value
                sp = cgutils.get_item_pointer(context, builder, sig.args[8], sca, [row])
                one = builder.insert_element(ir.Constant(vec, ir.Undefined), builder.load(sp),
                                             ir.Constant(i32, 0))
                factor = builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                                ir.Constant(ir.VectorType(i32, vec.count), [0] * vec.count))
                return builder.fmul(value, factor)

            def index(k):
                ptr = cgutils.get_item_pointer(context, builder, sty, sa, [k])
                return context.cast(builder, builder.load(ptr), sty.dtype, types.intp)

            accs = [cgutils.alloca_once(builder, vec) for _ in range(nvec)]
            with builder.if_else(builder.icmp_signed(">=", self_, ir.Constant(intp, 0))) as (has, hasnt):
                with has:
                    for j, acc in enumerate(accs):
                        builder.store(load_row(self_, j), acc)
                with hasnt:
                    for acc in accs:
                        builder.store(ir.Constant(vec, None), acc)
            num_edges = builder.extract_value(sa.shape, 0)
            pf = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
            with cgutils.for_range_slice(builder, start_, end_, ir.Constant(intp, 1)) as (k, _):
                ahead = builder.add(k, ir.Constant(intp, PREFETCH_AHEAD))
                with builder.if_then(builder.icmp_signed("<", ahead, num_edges), likely=True):
                    row = index(ahead)
                    for j in range(nvec):
                        builder.call(pf, [vec_ptr(xa, row, j), ir.Constant(i32, 0), ir.Constant(i32, 3),
                                          ir.Constant(i32, 1)])
                row = index(k)
                for j, acc in enumerate(accs):
                    builder.store(builder.fadd(builder.load(acc), load_row(row, j)), acc)
            for j, acc in enumerate(accs):
                ptr = builder.bitcast(vec_ptr(oa, v_, j), vec.as_pointer())
                builder.store(builder.load(acc), ptr, align=size)
            return context.get_dummy_value()

        return sig, codegen

    return gather_sum


_gather_sum_block, _gather_sum_one = _make_gather_sum(BLOCK, False), _make_gather_sum(1, False)
_scaled_sum_block, _scaled_sum_one = _make_gather_sum(BLOCK, True), _make_gather_sum(1, True)


@kernel
def sum_rows(bounds, indptr, src, x, ss, ds, self_loop, mean, out):
    """out[v] = d[v] * ([self_loop and v < len(x)] s[v] x[v] + sum_k s[src[k]] x[src[k]]), / in-degree
    for mean; ss (N,) and ds (V, 1), each empty for none. The width must pass `fits`."""
    F = out.shape[1]
    lanes = VECTOR_BYTES // x.itemsize
    has_ds = ds.shape[0] > 0
    has_ss = ss.shape[0] > 0
    n_x = x.shape[0]
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            self_row = v if self_loop and v < n_x else -1
            col = 0
            while col + BLOCK * lanes <= F:
                if has_ss:
                    _scaled_sum_block(x, src, start, end, self_row, out, v, col, ss)
                else:
                    _gather_sum_block(x, src, start, end, self_row, out, v, col, ss)
                col += BLOCK * lanes
            while col < F:
                if has_ss:
                    _scaled_sum_one(x, src, start, end, self_row, out, v, col, ss)
                else:
                    _gather_sum_one(x, src, start, end, self_row, out, v, col, ss)
                col += lanes
            o = out[v]
            if mean and end > start:
                inv = 1.0 / (end - start)
                for f in range(F):
                    o[f] *= inv
            if has_ds:
                d = ds[v, 0]
                for f in range(F):
                    o[f] *= d
