"""`SparseFeatures`: row-sparse node features (bag-of-words inputs) that compiled models read without
densifying them.

Facebook's 4,714-wide binary features hold ~14 non-zeros per row (0.3 %); as a dense tensor every
mini-batch gathers, drops out and multiplies ~20,000 x 4,714 floats, almost all zeros. A `SparseFeatures`
keeps the rows in CSR form (``indptr``, ``col``, ``val``) and supports exactly the operations a generated
module applies to a node input before its first linear map, each computing the same math as on the
dense tensor:

    x[ids], x[:n]                      row gather / prefix (CSR rows)
    F.dropout(x, p, training)          dropout of the stored values: a zero entry of the dense tensor
                                       stays zero whatever its mask, so dropping only the non-zeros
                                       (each kept with probability 1-p, scaled by 1/(1-p)) has the same
                                       distribution as dense dropout (another random stream)
    x @ W, F.linear(x, W, b)           (N, F) x (F, H) -> dense (N, H): sum_j x_ij W_j over the
                                       non-zeros (``F.embedding_bag``, differentiable in W)
    ops.gspmm(g, "copy_u", sum|mean)   sum_{u in N(v)} w_uv x_u (and / deg(v)): the estimator of
                                       `kokoyi.sampling.estimator`, kept unevaluated (`Aggregated`):
                                       followed by a linear map W it is computed as the aggregate of
                                       x W (the order the compiler already picks when the map is
                                       written inside the sum: the narrower side); anything else
                                       applied to it materialises the rows (the neighbours' rows
                                       concatenated, scaled by w_uv) as a SparseFeatures

Only the summation order differs from the dense path (float rounding). Anything else applied to it
raises a TypeError that names the operation; the features then must be dense (``.to_dense()``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SparseFeatures", "Aggregated"]


def _segment_arange(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    row = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    return row, torch.arange(row.numel(), device=counts.device) - starts[row]


class SparseFeatures:
    """(N, F) node features stored as CSR rows; see the module docstring."""

    is_sparse_features = True

    def __init__(self, indptr: torch.Tensor, col: torch.Tensor, val: torch.Tensor, num_cols: int):
        if indptr.dim() != 1 or col.dim() != 1 or val.dim() != 1 or col.numel() != val.numel() or \
                indptr.numel() < 1 or int(indptr[-1]) != col.numel():
            raise ValueError(f"SparseFeatures: expected indptr (N+1,), col (nnz,), val (nnz,) with indptr[-1] "
                             f"== nnz, got shapes {tuple(indptr.shape)}, {tuple(col.shape)}, {tuple(val.shape)}")
        if not val.is_floating_point():
            raise TypeError(f"SparseFeatures: values must be floating point, got {val.dtype}")
        self.indptr = indptr.to(torch.int64)
        self.col = col.to(torch.int64)
        self.val = val
        self.shape = torch.Size((indptr.numel() - 1, int(num_cols)))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(cls, x: torch.Tensor) -> "SparseFeatures":
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"SparseFeatures.from_dense: expected a 2-D tensor, got {getattr(x, 'shape', x)!r}")
        row, col = torch.nonzero(x, as_tuple=True)
        counts = torch.bincount(row, minlength=x.shape[0])
        indptr = torch.zeros(x.shape[0] + 1, dtype=torch.int64, device=x.device)
        indptr[1:] = torch.cumsum(counts, 0)
        return cls(indptr, col, x[row, col], x.shape[1])

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(tuple(self.shape), dtype=self.dtype, device=self.device)
        row = torch.repeat_interleave(torch.arange(self.shape[0], device=self.device), torch.diff(self.indptr))
        return out.index_put_((row, self.col), self.val, accumulate=True)

    # ------------------------------------------------------------------ tensor-like attributes
    @property
    def dtype(self):
        return self.val.dtype

    @property
    def device(self):
        return self.val.device

    @property
    def nnz(self) -> int:
        return self.col.numel()

    def dim(self) -> int:
        return 2

    def size(self, d=None):
        return self.shape if d is None else self.shape[d]

    def is_floating_point(self) -> bool:
        return True

    def is_complex(self) -> bool:
        return False

    @property
    def requires_grad(self) -> bool:
        return self.val.requires_grad

    def to(self, device=None, dtype=None, non_blocking=False) -> "SparseFeatures":
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        val = self.val.to(device=device or self.device, dtype=dtype or self.dtype, non_blocking=non_blocking)
        dev = val.device
        return SparseFeatures(self.indptr.to(dev), self.col.to(dev), val, self.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"SparseFeatures(shape={tuple(self.shape)}, nnz={self.nnz}, dtype={self.dtype})"

    # ------------------------------------------------------------------ rows
    def rows(self, ids: torch.Tensor) -> "SparseFeatures":
        """The rows `ids` (a 1-D integer tensor, repeats allowed), in that order."""
        ids = ids.to(self.device, torch.int64)
        start = self.indptr[ids]
        counts = self.indptr[ids + 1] - start
        row, off = _segment_arange(counts)
        take = start[row] + off
        indptr = torch.zeros(ids.numel() + 1, dtype=torch.int64, device=self.device)
        indptr[1:] = torch.cumsum(counts, 0)
        return SparseFeatures(indptr, self.col[take], self.val[take], self.shape[1])

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise TypeError("SparseFeatures: only contiguous row slices x[a:b] are supported")
            a, b = int(self.indptr[start]), int(self.indptr[max(stop, start)])
            return SparseFeatures(self.indptr[start:max(stop, start) + 1] - a, self.col[a:b], self.val[a:b],
                                  self.shape[1])
        if isinstance(key, torch.Tensor) and key.dim() == 1:
            if key.dtype == torch.bool:
                key = torch.nonzero(key).flatten()
            if not key.dtype.is_floating_point:
                return self.rows(key)
        raise TypeError(f"SparseFeatures: indexing with {type(key).__name__} is not supported (row slices "
                        "x[a:b] and 1-D index tensors are)")

    # ------------------------------------------------------------------ maths
    def matmul(self, w: torch.Tensor) -> torch.Tensor:
        """Dense (N, H) = x @ w for w (F, H): sum over each row's non-zeros."""
        if not isinstance(w, torch.Tensor) or w.dim() != 2 or w.shape[0] != self.shape[1]:
            raise ValueError(f"SparseFeatures @ W: W must have shape ({self.shape[1]}, H), got "
                             f"{tuple(getattr(w, 'shape', ()))}")
        if self.nnz == 0:
            return torch.zeros(self.shape[0], w.shape[1], dtype=w.dtype, device=w.device) + 0 * w.sum()
        return F.embedding_bag(self.col, w, self.indptr, mode="sum", per_sample_weights=self.val.to(w.dtype),
                               include_last_offset=True)

    def __matmul__(self, w):
        return self.matmul(w)

    def dropout(self, p: float, training: bool) -> "SparseFeatures":
        if not training or p == 0:
            return self
        return SparseFeatures(self.indptr, self.col, F.dropout(self.val, p, True), self.shape[1])

    def aggregate(self, graph, reduce: str, weight=None, degrees=None) -> "SparseFeatures":
        """Rows of the targets of `graph`: sum_{edges u->v} w_uv x_u (divided by `degrees` for mean).
        `graph`'s internal edges are grouped by target (``indptr``), so the targets' rows are the sources'
        rows concatenated edge by edge."""
        src = graph.src.to(torch.int64)
        rows = self.rows(src)
        nnz_per_edge = torch.diff(rows.indptr)
        val = rows.val
        if weight is not None:
            val = val * weight.to(val.dtype).repeat_interleave(nnz_per_edge)
        ends = torch.cumsum(nnz_per_edge, 0)
        e_ptr = graph.indptr.to(torch.int64)
        indptr = torch.zeros(graph.num_dst + 1, dtype=torch.int64, device=self.device)
        has = e_ptr[1:] > 0
        indptr[1:][has] = ends[e_ptr[1:][has] - 1]
        if reduce == "mean":
            deg = degrees.to(val.dtype).clamp(min=1)
            per_row = torch.diff(indptr)
            val = val / deg.repeat_interleave(per_row)
        return SparseFeatures(indptr, rows.col, val, self.shape[1])

    # ------------------------------------------------------------------ torch functions
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            x = args[0]
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            training = kwargs.get("training", args[2] if len(args) > 2 else True)
            return x.dropout(p, training)
        if func in (torch.matmul, torch.Tensor.__matmul__, torch.mm) and isinstance(args[0], SparseFeatures):
            return args[0].matmul(args[1])
        if func is F.linear and isinstance(args[0], SparseFeatures):
            w = args[1] if len(args) > 1 else kwargs["weight"]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            out = args[0].matmul(w.t())
            return out if b is None else out + b
        name = getattr(func, "__qualname__", getattr(func, "__name__", str(func)))
        raise TypeError(f"{name} is not supported on SparseFeatures (row-sparse node features support "
                        "dropout, row selection, a linear map and neighbour sums/means); pass dense features "
                        "(x.to_dense()) for this model")


class Aggregated:
    """``gspmm(graph, "copy_u", reduce, x)`` of `SparseFeatures` x, not yet evaluated. ``@ W`` gives
    ``gspmm(graph, "copy_u", reduce, x @ W)`` (the same sum, reassociated: (A X) W = A (X W)); any other
    operation first materialises the rows (`rows`)."""

    is_sparse_features = True

    def __init__(self, graph, reduce: str, x: SparseFeatures, degrees):
        self.graph, self.reduce, self.x, self.degrees = graph, reduce, x, degrees
        self.shape = torch.Size((graph.num_dst, x.shape[1]))
        self.dtype, self.device = x.dtype, x.device
        self._rows = None

    def rows(self) -> SparseFeatures:
        if self._rows is None:
            self._rows = self.x.aggregate(self.graph, self.reduce, getattr(self.graph, "weight", None), self.degrees)
        return self._rows

    def dim(self) -> int:
        return 2

    def matmul(self, w):
        from kokoyi.sampling.estimator import gspmm

        return gspmm(self.graph, "copy_u", self.reduce, self.x.matmul(w), None)

    def __matmul__(self, w):
        return self.matmul(w)

    def __getattr__(self, name):  # everything else: as the materialised rows
        if name.startswith("_") or name in ("graph", "reduce", "x", "degrees"):
            raise AttributeError(name)
        return getattr(self.rows(), name)

    def __getitem__(self, key):
        return self.rows()[key]

    def __repr__(self) -> str:
        return f"Aggregated({self.reduce}, shape={tuple(self.shape)})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.matmul, torch.Tensor.__matmul__, torch.mm) and isinstance(args[0], Aggregated):
            return args[0].matmul(args[1])
        args = tuple(a.rows() if isinstance(a, Aggregated) else a for a in args)
        return SparseFeatures.__torch_function__(func, types, args, kwargs)
