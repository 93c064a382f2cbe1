"""Process groups: start N local processes, or join the group `torchrun` describes.

`init_process_group()` reads the environment torchrun (or `spawn`) sets: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT; the backend is gloo on CPU and nccl when the device is CUDA. `spawn(fn, n)`
runs `fn(rank, world, *args)` in n local processes on the loopback interface (MASTER_ADDR=127.0.0.1),
each with its process group initialised and destroyed around the call.
"""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def backend_for(device) -> str:
    """The default group's backend for a model on `device`: nccl for CUDA tensors, gloo otherwise.
    (kokoyi's CPU-side exchanges always run on separate gloo groups, whatever this says.)"""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_process_group(device="cpu") -> tuple[int, int]:
    """Join the group described by the environment (torchrun's variables); (rank, world size).
    Without RANK/WORLD_SIZE in the environment: a group of one process on the loopback interface."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR=LOOPBACK)
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend_for(device), init_method="env://")
    return dist.get_rank(), dist.get_world_size()


def _entry(rank: int, fn, world: int, port: int, threads: int, args, device="cpu") -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port))
    if threads:
        torch.set_num_threads(threads)
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend_for(device), init_method="env://")
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def spawn(fn, nprocs: int, *args, threads: int = 1, device="cpu") -> None:
    """Run `fn(rank, nprocs, *args)` in `nprocs` local processes over loopback (gloo; nccl with rank r
    on GPU r when `device` is cuda); raises if any process fails. `fn` must be importable."""
    if not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs must be a positive int, got {nprocs!r}")
    mp.spawn(_entry, args=(fn, nprocs, free_port(), threads, args, device), nprocs=nprocs, join=True)
