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
from kokoyi.sampling.estimator import check_edge_input, edge_rows  # noqa: E402

__all__ += ["hops", "node_degrees", "node_rows", "exchange", "full_graph_only", "edge_rows", "check_edge_input"]
