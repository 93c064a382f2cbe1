"""copy_u max/min with the row and its winners held in SIMD registers (rowsum.py's treatment):

    out[v, f] = max_{k in in(v)} x[src[k], f]     arg[v, f] = the first edge k reaching it     (min alike)

for rows of exactly one 64-byte vector (16 fp32 / 8 fp64 features: a narrow layer), where it measured
2.5-4x faster than _copy_extreme_rows (1 thread, 10^5 / 10^6 power law, 16 fp32: 5.0 vs 12.4 ms, best
of 15). At 64 fp32 features four accumulator pairs measured no faster than the generic loop (22 vs
22 ms best of 15), so wider rows keep that loop. Per vector of the row, two accumulators:
the running extreme and the int32 offset (k - start) of its edge; the first in-edge initialises both,
a later edge replaces a lane only when strictly better or when it brings the lane's first NaN
(`(m > b) | (isnan(m) & !isnan(b))`, as _copy_extreme_rows: ties keep the lowest edge id; a NaN wins
once and stays). Rows without in-edges are left to the caller (0 and -1). Same selections in the same
order as _copy_extreme_rows, so identical results.
"""
from __future__ import annotations

from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._common import PREFETCH_AHEAD, kernel
from .rowsum import VECTOR_BYTES


def _make_gather_extreme(nvec: int, want_max: bool):
    @intrinsic
    def gather_extreme(typingctx, x, src, start, end, out, arg, v, col):
        """out[v, cols] / arg[v, cols] (int64) for the in-edges start..end-1 (end > start), cols
        = col .. col + nvec*L - 1, L = 64 bytes / itemsize; contiguous rows."""
        if not (isinstance(x, types.Array) and isinstance(out, types.Array) and x.ndim == 2
                and out.ndim == 2 and x.dtype == out.dtype and isinstance(x.dtype, types.Float)
                and isinstance(src, types.Array) and src.ndim == 1 and isinstance(src.dtype, types.Integer)
                and isinstance(arg, types.Array) and arg.ndim == 2 and arg.dtype == types.int64):
            return None
        sig = types.void(x, src, start, end, out, arg, v, col)

        def codegen(context, builder, sig, args):
            xty, sty, oty, aty = sig.args[0], sig.args[1], sig.args[4], sig.args[5]
            xa = context.make_array(xty)(context, builder, args[0])
            sa = context.make_array(sty)(context, builder, args[1])
            oa = context.make_array(oty)(context, builder, args[4])
            aa = context.make_array(aty)(context, builder, args[5])
            intp = context.get_value_type(types.intp)

            def as_intp(i):
                return context.cast(builder, args[i], sig.args[i], types.intp)

            start_, end_, v_, col_ = (as_intp(i) for i in (2, 3, 6, 7))
            elt = context.get_value_type(xty.dtype)
            size = context.get_abi_sizeof(elt)
            lanes = VECTOR_BYTES // size
            vec = ir.VectorType(elt, lanes)
            i32, i64 = ir.IntType(32), ir.IntType(64)
            ivec, lvec = ir.VectorType(i32, lanes), ir.VectorType(i64, lanes)
            i8p = ir.IntType(8).as_pointer()

            def ptr(ary, row, col_elems, elem_size, j, ty):
                base = builder.bitcast(ary.data, i8p)
                stride = builder.extract_value(ary.strides, 0)
                off = builder.add(builder.mul(row, stride), builder.add(
                    builder.mul(col_elems, ir.Constant(intp, elem_size)),
                    ir.Constant(intp, lanes * elem_size * j)))
                return builder.bitcast(builder.gep(base, [off]), ty.as_pointer())

            def index(k):
                p = cgutils.get_item_pointer(context, builder, sty, sa, [k])
                return context.cast(builder, builder.load(p), sty.dtype, types.intp)

            def splat(value, ty):
                undef = ir.Constant(ty, ir.Undefined)
                first = builder.insert_element(undef, value, ir.Constant(i32, 0))
                mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
                return builder.shuffle_vector(first, undef, mask)

            best = [cgutils.alloca_once(builder, vec) for _ in range(nvec)]
            wins = [cgutils.alloca_once(builder, ivec) for _ in range(nvec)]
            first = index(start_)
            for j in range(nvec):
                builder.store(builder.load(ptr(xa, first, col_, size, j, vec), align=size), best[j])
                builder.store(ir.Constant(ivec, None), wins[j])
            num_edges = builder.extract_value(sa.shape, 0)
            pf = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
            k0 = builder.add(start_, ir.Constant(intp, 1))
            with cgutils.for_range_slice(builder, k0, end_, ir.Constant(intp, 1)) as (k, _):
                ahead = builder.add(k, ir.Constant(intp, PREFETCH_AHEAD))
                with builder.if_then(builder.icmp_signed("<", ahead, num_edges), likely=True):
                    row = index(ahead)
                    for j in range(nvec):
                        builder.call(pf, [builder.bitcast(ptr(xa, row, col_, size, j, vec), i8p),
                                          ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
                row = index(k)
                off = splat(builder.trunc(builder.sub(k, start_), i32), ivec)
                for j in range(nvec):
                    m = builder.load(ptr(xa, row, col_, size, j, vec), align=size)
                    b = builder.load(best[j])
                    better = builder.fcmp_ordered(">" if want_max else "<", m, b)
                    first_nan = builder.and_(builder.fcmp_unordered("uno", m, m),
                                             builder.fcmp_ordered("ord", b, b))
                    take = builder.or_(better, first_nan)
                    builder.store(builder.select(take, m, b), best[j])
                    builder.store(builder.select(take, off, builder.load(wins[j])), wins[j])
            base = splat(start_ if intp.width == 64 else builder.sext(start_, i64), lvec)
            for j in range(nvec):
                builder.store(builder.load(best[j]), ptr(oa, v_, col_, size, j, vec), align=size)
                edge = builder.add(builder.sext(builder.load(wins[j]), lvec), base)
                builder.store(edge, ptr(aa, v_, col_, 8, j, lvec), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return gather_extreme


_max_one = _make_gather_extreme(1, True)
_min_one = _make_gather_extreme(1, False)
WIDTH_BYTES = VECTOR_BYTES  # the row width this kernel takes


def fits(width: int, itemsize: int) -> bool:
    return width * itemsize == WIDTH_BYTES


@kernel
def extreme_rows(bounds, indptr, src, x, is_max, out, arg):
    """copy_u max (is_max) or min into out and arg (preset to 0 and -1; rows without in-edges keep
    them). Rows must be one vector wide (`fits`)."""
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            if end == start:
                continue
            if is_max:
                _max_one(x, src, start, end, out, arg, v, 0)
            else:
                _min_one(x, src, start, end, out, arg, v, 0)
