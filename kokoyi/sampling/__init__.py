"""`kokoyi.sampling`: mini-batch training on sampled blocks.

A `Block` is a bipartite `kokoyi.Graph` whose target nodes are the first `num_dst` source nodes and
which carries the global ids of its nodes, the full graph's degrees and the sampler's per-edge
estimator weights (see `docs/language.md`, "Sampled blocks"). Runtime code: no compiler import.
"""
from kokoyi.sampling.block import Block
from kokoyi.sampling.control_variate import control_variate_blocks
from kokoyi.sampling.exact import full_block, full_blocks, layerwise_inference
from kokoyi.sampling.history import History, WithHistory, with_history

__all__ = ["Block", "History", "WithHistory", "with_history", "full_block", "full_blocks",
           "layerwise_inference", "control_variate_blocks"]

# samplers and loaders (runtime only: torch, numpy, pymetis)
from kokoyi.sampling.batch import Batch  # noqa: E402
from kokoyi.sampling.cluster import ClusterSampler  # noqa: E402
from kokoyi.sampling.layerwise import AdaptiveSampler, FastGCNSampler, LadiesSampler  # noqa: E402
from kokoyi.sampling.loader import (ASGCNLoader, ClusterLoader, FastGCNLoader, LadiesLoader,  # noqa: E402
                                    Loader, NeighborLoader, NodeLoader, SaintLoader, SubgraphLoader)
from kokoyi.sampling.neighbor import FullNeighborSampler, NeighborSampler  # noqa: E402
from kokoyi.sampling.saint import SaintSampler  # noqa: E402

__all__ += ["ASGCNLoader", "AdaptiveSampler", "Batch", "ClusterLoader", "ClusterSampler", "FastGCNLoader",
            "FastGCNSampler", "FullNeighborSampler", "LadiesLoader", "LadiesSampler", "Loader",
            "NeighborLoader", "NeighborSampler", "NodeLoader", "SaintLoader", "SaintSampler",
            "SubgraphLoader"]
from kokoyi.sampling.spec import KINDS as SAMPLERS, make_loader, parse_sampler  # noqa: E402

__all__ += ["SAMPLERS", "make_loader", "parse_sampler"]
