"""`kokoyi.ops`: the sparse operators and boundary checks that generated modules call.

The operator table lives in kokoyi/kernels/ops.py; this module is the stable import path.
"""
from kokoyi.kernels.ops import *  # noqa: F401,F403
from kokoyi.kernels.ops import __all__ as _kernel_all
from kokoyi.kernels.validate import check_hyper, check_input

__all__ = list(_kernel_all) + ["check_hyper", "check_input"]

# On a sampled Block the reductions compute the sampler's estimate of the full-graph quantity
# (kokoyi/sampling/estimator.py); on a plain Graph they are the kernels' operators above.
from kokoyi.sampling.estimator import (edge_softmax, exchange, full_graph_only, gat_aggregate, gspmm,  # noqa: E402,F811
                                       hops, node_degrees, node_rows)

__all__ += ["hops", "node_degrees", "node_rows", "exchange", "full_graph_only"]
from kokoyi.kernels.readout import broadcast_graph, graph_softmax, readout  # noqa: E402

__all__ += ["readout", "broadcast_graph", "graph_softmax"]
from kokoyi.kernels.norms import GraphNorm  # noqa: E402

__all__ += ["GraphNorm"]
from kokoyi.kernels.relations import rel_gspmm, rel_in_degrees  # noqa: E402

__all__ += ["rel_gspmm", "rel_in_degrees"]
