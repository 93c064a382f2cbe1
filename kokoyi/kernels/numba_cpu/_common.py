"""Host-side helpers shared by the numba kernel families: compilation flags, threads, the
torch <-> numpy hand-over, row partitions, feature-shape canonicalisation, and the finite softmax
weight. Nothing here imports the compiler."""
from __future__ import annotations

import math
import os
import sys
import threading
import time
import types as types_mod

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Kernels are compiled on first use for each (float dtype, index dtype) pair and cached on disk
# (cache=True: NUMBA_CACHE_DIR, else __pycache__ beside this file or the user cache), so a second
# process loads them in milliseconds instead of compiling for seconds.
device_fn = numba.njit(inline="always", cache=True, nogil=True)
_STATE = threading.local()  # .threads: the thread count of the launch in progress (see Launch)


class Kernel:
    """A kernel compiled twice, lazily: with parallel=True (prange over row chunks, numba's thread
    pool) and serially (prange runs as range, in the calling thread). A launch with one thread
    takes the serial twin: no hand-over to a pool worker, which on a loaded machine has to wait
    for a core (measured: 0.5 ms of work taking 100+ ms). Results are identical: every output
    row is computed by one thread either way."""

    def __init__(self, fn, **flags):
        flags = {"cache": True, "nogil": True, "boundscheck": False, **flags}
        self.parallel = numba.njit(parallel=True, **flags)(fn)
        twin = types_mod.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                      fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"  # its own on-disk cache entry
        self.serial = numba.njit(parallel=False, **flags)(twin)
        self.__doc__ = fn.__doc__

    def __call__(self, *args):
        threads = getattr(_STATE, "threads", 1)
        return (self.parallel if threads > 1 else self.serial)(*args)


def kernel(fn):
    return Kernel(fn)


def dot_kernel(fn):
    """For kernels with dot products: reassociation lets the sum vectorise (no nnan/ninf: inf and
    NaN keep their meaning); the order is fixed by the compiled code, so still deterministic."""
    return Kernel(fn, fastmath={"reassoc", "nsz", "contract"})

WORK_DTYPES = (torch.float32, torch.float64)   # fp16/bf16 are widened to fp32 on the host
INDEX_DTYPES = (torch.int32, torch.int64)
CHUNKS_PER_THREAD = 8   # row chunks per thread: balances power-law rows, keeps scheduling cheap
SERIAL_WORK = 1 << 20   # below this many (edge x feature) elements (~0.5 ms) one thread does it
LOAD_CHECK_S = 1.0      # how often the load average is read (os.getloadavg: /proc/loadavg)


def shares_torch_openmp(maps: str = "/proc/self/maps") -> bool:
    """Would numba's `omp` threading layer run on torch's own OpenMP threads? It does when torch's
    parallel backend is OpenMP, exactly one OpenMP runtime is loaded (torch's), and the process's
    global symbol scope resolves `GOMP_parallel` into it (torch loads its libgomp globally): numba's
    omppool names libgomp by another soname and so maps a second copy, but the dynamic linker binds
    omppool's calls to the runtime already in the global scope, so numba's loops run on torch's
    threads (tests/test_numba_kernels.py checks the binding with LD_DEBUG). Anywhere else (no /proc,
    another runtime, none global): False, and numba keeps its workqueue layer."""
    try:
        info = torch.__config__.parallel_info()
        if "OpenMP" not in info.split("parallel backend:", 1)[1].splitlines()[0]:
            return False
        import ctypes

        address = ctypes.cast(ctypes.CDLL(None).GOMP_parallel, ctypes.c_void_p).value
        runtimes: dict = {}  # path -> mapped address ranges
        with open(maps) as f:
            for line in f:
                fields = line.split()
                name = os.path.basename(fields[-1]) if len(fields) >= 6 else ""
                if name.startswith(("libgomp", "libomp", "libiomp")):
                    lo, hi = (int(a, 16) for a in fields[0].split("-"))
                    runtimes.setdefault(fields[-1], []).append((lo, hi))
        if len(runtimes) != 1:
            return False
        (ranges,) = runtimes.values()
        return any(lo <= address < hi for lo, hi in ranges)
    except Exception:  # no /proc, no OpenMP symbol in the global scope, an unexpected format
        return False


# Threading layer. torch's OpenMP workers spin for milliseconds after each parallel torch op; a second
# pool (numba's workqueue) then waits for the cores they hold: on 2 cores a 3.2 ms copy_u-sum took
# 5.5 ms right after a product, and 2-thread kernels barely beat 1 thread inside a training step
# (BENCHMARKS.md, "One thread pool"). So numba's loops run on torch's OpenMP pool when they can (the
# `omp` layer, see shares_torch_openmp), else on the workqueue layer, whose workers sleep rather
# than spin. Two guards stay: the load rule (threads_for: one thread, the serial twin, while other
# processes fill the cores, where any OpenMP barrier stalls) and the fork rule (GNU OpenMP is not
# fork-safe: numba terminates a forked child that launches a parallel loop after its parent did, so a
# child runs the serial twins). The lock serialises launches (the workqueue layer is not re-entrant).
if "NUMBA_THREADING_LAYER" not in os.environ:
    if shares_torch_openmp():
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
        numba.config.THREADING_LAYER = "default"
    else:
        numba.config.THREADING_LAYER = "workqueue"
_LOCK = threading.Lock()
_POOL_PID: list = []  # the process that started numba's pool (the fork rule)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in WORK_DTYPES else torch.float32


_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
              torch.int64: np.int64}


def zeros(shape, dtype: torch.dtype) -> torch.Tensor:
    """torch.zeros without torch's threaded fill (an OpenMP region that stalls on a loaded
    machine: BENCHMARKS.md, a 2708 x 64 fill_ took 12 ms): numpy's calloc, shared with torch.
    bfloat16 (no numpy dtype) goes through torch."""
    if dtype not in _NP_DTYPES:
        return torch.zeros(shape, dtype=dtype)
    return torch.from_numpy(np.zeros(shape, dtype=_NP_DTYPES[dtype]))


POOL_BYTES = 512 << 20   # outputs kept for reuse, all shapes together
POOL_PER_SHAPE = 2
_POOL: dict = {}         # (shape, numpy dtype) -> [ndarray]
_POOL_LOCK = threading.Lock()


def empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor (for kernels that write every element), from a small pool of numpy
    outputs: a buffer is reused once nothing references it any more (its tensor, views and storages
    gone: the pool holds the only reference). A fresh 25 MB output costs ~6,000 page faults on first
    touch (GLIBC's malloc returns big blocks to the OS); a reused one is already mapped. Bounded by
    POOL_BYTES and POOL_PER_SHAPE; a buffer in use is never handed out twice."""
    if dtype not in _NP_DTYPES:
        return torch.empty(shape, dtype=dtype)
    key = (tuple(int(d) for d in shape), _NP_DTYPES[dtype])
    with _POOL_LOCK:
        entries = _POOL.setdefault(key, [])
        for arr in entries:
            if sys.getrefcount(arr) == 3:  # the pool's list, this loop variable, getrefcount's argument
                return torch.from_numpy(arr)
        arr = np.empty(key[0], dtype=key[1])
        used = sum(a.nbytes for lst in _POOL.values() for a in lst)
        if len(entries) < POOL_PER_SHAPE and used + arr.nbytes <= POOL_BYTES:
            entries.append(arr)
        return torch.from_numpy(arr)


def minus_ones(shape) -> torch.Tensor:
    """An int64 tensor of -1 (the arg of rows without in-edges), filled by numpy."""
    return torch.from_numpy(np.full(shape, -1, dtype=np.int64))


def np_view(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (made contiguous first; no copy when it already is)."""
    return t.detach().contiguous().numpy()


def threads_for(work: int) -> int:
    """torch.get_num_threads(), capped by numba's pool; 1 for small work, and 1 while the other
    processes keep the cores busy: a worker that has to wait for a core turns a 0.5 ms launch into
    a 100 ms stall (benchmarks/bench_threads.py), one thread never waits."""
    if work < SERIAL_WORK:
        return 1
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if threads > 1 and (_oversubscribed() or forked_from_pool()):
        return 1
    return threads


def forked_from_pool() -> bool:
    """Is this a child forked after its parent started numba's thread pool? (the fork rule)"""
    return bool(_POOL_PID) and _POOL_PID[0] != os.getpid()


_LOAD = [0.0, False, None]  # (time of the last check, oversubscribed?, smoothed load of the others)
LOAD_SMOOTHING = 0.5        # weight of the newest sample of the others' runnable threads
# serial when the others' smoothed runnable threads leave less than this many cores: 1.0 = a whole
# core. (1.5 tripped on an idle 2-core VM: one stray runnable kernel thread in two samples made the
# 2-thread kernels serial for a second, and 2-thread benchmark runs flipped between 1 and 2 threads.)
OTHERS_FREE_CORES = 1.0


def _oversubscribed() -> bool:
    """Is less than one core (OTHERS_FREE_CORES) free of other processes' work, so that a second
    worker would wait for a core? The others' load is the system's runnable threads now
    (/proc/loadavg's 4th field) minus this process's own runnable threads, smoothed over the
    checks (one per LOAD_CHECK_S). The load average itself is no measure here: it counts this
    process's own threads, so a 2-thread job on an idle 2-core machine read it as full and ran
    serially (BENCHMARKS.md, session 2: copy_u-max 53.5 ms at 1 thread, 54.8 ms at 2)."""
    now = time.monotonic()
    if now - _LOAD[0] > LOAD_CHECK_S:
        cores = os.cpu_count() or 1
        others = _others_running()
        if others is None:  # no /proc: the load average, which includes this process
            try:
                _LOAD[1] = os.getloadavg()[0] >= cores
            except OSError:  # no load average on this platform
                _LOAD[1] = False
        else:
            last = _LOAD[2]
            _LOAD[2] = others if last is None else last + LOAD_SMOOTHING * (others - last)
            _LOAD[1] = _LOAD[2] > cores - OTHERS_FREE_CORES
        _LOAD[0] = now
    return _LOAD[1]


def _others_running(proc: str = "/proc"):
    """Runnable threads of other processes now (None where /proc is missing): the system's count
    (it includes the thread reading it) minus the threads of this process in state R."""
    try:
        with open(f"{proc}/loadavg") as fh:
            running = int(fh.read().split()[3].split("/")[0])
        tids = os.listdir(f"{proc}/self/task")
    except (OSError, ValueError, IndexError):
        return None
    own = 0
    for tid in tids:
        try:
            with open(f"{proc}/self/task/{tid}/stat") as fh:
                stat = fh.read()
        except OSError:  # the thread ended meanwhile
            continue
        own += stat[stat.rindex(")") + 2:stat.rindex(")") + 3] == "R"
    return max(0, running - own)


def row_bounds(indptr: np.ndarray, threads: int) -> np.ndarray:
    """Row chunk boundaries (int64, P+1 entries) holding about equal numbers of edges, so that a
    hub row does not leave the other threads idle (numba's prange splits iterations evenly)."""
    rows = indptr.shape[0] - 1
    parts = 1 if threads == 1 else min(rows, threads * CHUNKS_PER_THREAD)
    if parts <= 1:
        return np.array([0, rows], dtype=np.int64)
    edges = int(indptr[-1])
    targets = np.linspace(0, edges, parts + 1)
    bounds = np.searchsorted(indptr, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, rows
    return np.unique(bounds)


def even_bounds(n: int, threads: int) -> np.ndarray:
    parts = 1 if threads == 1 else max(1, min(n, threads * CHUNKS_PER_THREAD))
    return np.linspace(0, n, parts + 1).astype(np.int64)


class Launch:
    """`with Launch(work):` picks the thread count for the kernels called inside (the serial twins
    for one thread); with more, sets numba's count and holds the pool's lock."""

    def __init__(self, work: int):
        self.threads = threads_for(work)

    def __enter__(self):
        _STATE.threads = self.threads
        if self.threads > 1:
            _LOCK.acquire()
            if not _POOL_PID:
                _POOL_PID.append(os.getpid())
            numba.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        if self.threads > 1:
            _LOCK.release()
        _STATE.threads = 1
        return False


def split_features(shape, *operand_shapes, at=None):
    """Canonical (H, D) split of the output feature shape `shape` such that every operand's padded
    feature shape is (H-part full or all 1) + (D-part full or all 1). Returns (H, D, [(Hx, Dx)])
    with Hx in {1, H}, Dx in {1, D}, or None when no split exists (the caller then expands).
    `at` forces the split point (g-SDDMM's dot reduces exactly the last axis)."""
    nf = len(shape)
    padded = [(1,) * (nf - len(s)) + tuple(s) for s in operand_shapes]
    for j in (range(nf + 1) if at is None else (at,)):
        head, tail = tuple(shape[:j]), tuple(shape[j:])
        dims = []
        for p in padded:
            ph, pt = p[:j], p[j:]
            if ph == head:
                hx = math.prod(head)
            elif all(d == 1 for d in ph):
                hx = 1
            else:
                break
            if pt == tail:
                dx = math.prod(tail)
            elif all(d == 1 for d in pt):
                dx = 1
            else:
                break
            dims.append((hx, dx))
        else:
            return math.prod(head), math.prod(tail), dims
    return None


@device_fn
def softmax_weight(z, m):
    """exp(z - m) with the finite conventions: a row max m = +inf gives weight 1 to the +inf
    entries and 0 to the rest (they share the mass equally), m = -inf (every entry -inf) gives 0
    everywhere (the row's alpha is then 0); NaN propagates."""
    if m == np.inf:
        return 1.0 if z == np.inf else 0.0
    if m == -np.inf:
        return 0.0
    return math.exp(z - m)


PREFETCH_AHEAD = 32   # edges: gathers are latency-bound; measured 21 -> 8 ms for copy_u-sum
CACHE_LINE = 64


def _make_prefetch(write: int):
    @intrinsic
    def prefetch(typingctx, arr, row, col):
        """Hint the CPU to fetch the cache line holding arr[row, col] (llvm.prefetch, for reading
        or for writing, keep in all cache levels). Never faults, changes no value; the index must
        only be a valid row."""
        if not isinstance(arr, types.Array) or arr.ndim != 2:
            return None

        def codegen(context, builder, sig, args):
            aryty = sig.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            r = context.cast(builder, args[1], sig.args[1], types.intp)
            c = context.cast(builder, args[2], sig.args[2], types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [r, c], wraparound=False,
                                           boundscheck=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, write), ir.Constant(i32, 3),
                              ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(arr, row, col), codegen

    return prefetch


prefetch = _make_prefetch(0)
prefetch_for_write = _make_prefetch(1)


@device_fn
def prefetch_row(arr, row):
    """Prefetch every cache line of the row arr[row, :]."""
    step = max(1, CACHE_LINE // arr.itemsize)
    for col in range(0, arr.shape[1], step):
        prefetch(arr, row, col)


@device_fn
def prefetch_row_for_write(arr, row):
    """Prefetch every cache line of the row arr[row, :] for a coming write (a scattered store then
    finds its line already owned)."""
    step = max(1, CACHE_LINE // arr.itemsize)
    for col in range(0, arr.shape[1], step):
        prefetch_for_write(arr, row, col)
