"""A self-contained PyTorch runtime, inlined into `kokoyi compile --standalone` output.

It defines `Graph` and the operators the generated code calls (`gspmm`, `gsddmm`, `edge_softmax`,
`check_input`, `check_hyper`) with plain torch index operations, whose autograd torch provides. The
file must import nothing but torch: it is pasted as-is into generated modules.
"""
import numbers

import torch


class Graph:
    """Edges sorted by target (CSR by destination); `eid` maps internal edge ids to the user's order."""

    def __init__(self, src, dst, num_src, num_dst, eid):
        self.src, self.dst, self.num_src, self.num_dst, self.eid = src, dst, num_src, num_dst, eid
        self._deg = {}

    @classmethod
    def from_edge_index(cls, edge_index, num_nodes=None):
        edge_index = torch.as_tensor(edge_index)
        if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.is_floating_point():
            raise ValueError(f"edge_index must be an integer tensor of shape (2, E), got "
                             f"{tuple(edge_index.shape)} {edge_index.dtype}")
        n = int(edge_index.max()) + 1 if num_nodes is None and edge_index.numel() else int(num_nodes or 0)
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
            raise ValueError(f"edge_index has node ids outside [0, {n})")
        order = torch.argsort(edge_index[1], stable=True)
        return cls(edge_index[0, order], edge_index[1, order], n, n, order)

    @property
    def num_edges(self):
        return int(self.src.numel())

    @property
    def device(self):
        return self.src.device

    def in_degrees(self):
        if "in" not in self._deg:
            self._deg["in"] = torch.bincount(self.dst, minlength=self.num_dst).float()
        return self._deg["in"]

    def out_degrees(self):
        if "out" not in self._deg:
            self._deg["out"] = torch.bincount(self.src, minlength=self.num_src).float()
        return self._deg["out"]

    def reverse(self):
        order = torch.argsort(self.src, stable=True)
        return Graph(self.dst[order], self.src[order], self.num_dst, self.num_src, self.eid[order])

    def edge_data(self, t):
        return t[self.eid]

    def edge_output(self, t):
        out = torch.empty_like(t)
        out[self.eid] = t
        return out

    def to(self, device):
        g = Graph(self.src.to(device), self.dst.to(device), self.num_src, self.num_dst, self.eid.to(device))
        return g


def _pick(graph, x, target):
    return {"u": lambda: x[graph.src], "v": lambda: x[graph.dst], "e": lambda: x}[target]()


_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}


def gsddmm(graph, op, lhs, rhs, lhs_target="u", rhs_target="v"):
    if op == "copy_lhs":
        return _pick(graph, lhs, lhs_target)
    if op == "copy_rhs":
        return _pick(graph, rhs, rhs_target)
    a, b = _pick(graph, lhs, lhs_target), _pick(graph, rhs, rhs_target)
    if op == "dot":
        return (a * b).sum(-1, keepdim=True)
    return _BINARY[op](a, b)


def gspmm(graph, op, reduce, u, e):
    if op == "copy_u":
        msg = u[graph.src]
    elif op == "copy_e":
        msg = e
    else:
        msg = _BINARY[op](u[graph.src], e)
    shape = (graph.num_dst,) + tuple(msg.shape[1:])
    index = graph.dst.view(-1, *([1] * (msg.dim() - 1))).expand_as(msg)
    if reduce in ("sum", "mean"):
        out = msg.new_zeros(shape).index_add_(0, graph.dst, msg)
        if reduce == "mean":
            deg = graph.in_degrees().to(out.dtype).clamp(min=1)
            out = out / deg.view(-1, *([1] * (out.dim() - 1)))
        return out
    red = {"max": "amax", "min": "amin"}[reduce]
    out = msg.new_zeros(shape).scatter_reduce(0, index, msg, red, include_self=False)
    return out


def edge_softmax(graph, scores, self_scores=None):
    index = graph.dst.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    shape = (graph.num_dst,) + tuple(scores.shape[1:])
    m = scores.new_full(shape, float("-inf")).scatter_reduce(0, index, scores, "amax", include_self=True)
    if self_scores is not None:
        m = torch.maximum(m, self_scores)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m).detach()
    ex = torch.exp(scores - m[graph.dst])
    den = scores.new_zeros(shape).index_add_(0, graph.dst, ex)
    if self_scores is None:
        return ex / den[graph.dst]
    ex_self = torch.exp(self_scores - m)
    den = den + ex_self
    return ex / den[graph.dst], ex_self / den


def gat_aggregate(graph, s_src, t_dst, feat, negative_slope=0.2, self_loop=False):
    """Attention with scores LeakyReLU(s_u + t_v), softmax over the in-edges (and the self loop), and the
    weighted sum of feat (num_src, H, D); composed from the ops above."""
    score = torch.nn.functional.leaky_relu(gsddmm(graph, "add", s_src, t_dst, "u", "v"), negative_slope)
    if not self_loop:
        return gspmm(graph, "mul", "sum", feat, edge_softmax(graph, score)[..., None])
    own = torch.nn.functional.leaky_relu(s_src[: graph.num_dst] + t_dst, negative_slope)
    alpha, alpha_self = edge_softmax(graph, score, own)
    return gspmm(graph, "mul", "sum", feat, alpha[..., None]) + feat[: graph.num_dst] * alpha_self[..., None]


def gspmm_scaled(graph, x, src_scale=None, dst_scale=None, self_loop=False):
    """dst_scale[v] * (sum_{u in N(v)} src_scale[u] x[u] + [self_loop] src_scale[v] x[v]); composed."""
    def rows(s, n):
        return s[:n].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    xs = x if src_scale is None else x * rows(src_scale, x.shape[0])
    out = gspmm(graph, "copy_u", "sum", xs, None)
    if self_loop:
        out = out + xs[: graph.num_dst]
    return out if dst_scale is None else out * rows(dst_scale, graph.num_dst)


def mm(x, W):
    """x @ W (kokoyi runs large CPU products on oneDNN; here torch's)."""
    return x @ W


def add_product(acc, y, W):
    """acc + y @ W, in place on acc (a fresh product of the generated code)."""
    if acc.dim() == 2 and y.dim() == 2 and W.dim() == 2 and acc.dtype == y.dtype == W.dtype:
        return acc.addmm_(y, W)
    return acc + y @ W


def softmax_aggregate(graph, scores, msg):
    """sum_{i -> v} softmax(scores)[i] * msg[i] per channel (kokoyi fuses it; here the composition)."""
    return gspmm(graph, "copy_e", "sum", None, edge_softmax(graph, scores) * msg)


def check_hyper(name, value, kind, bounds=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"hyperparameter {name!r} must be a number, got {value!r}")
    if kind in ("dim", "nat"):
        if int(value) != value or value < (1 if kind == "dim" else 0):
            raise ValueError(f"hyperparameter {name!r} must be a {'positive' if kind == 'dim' else 'non-negative'} "
                             f"integer, got {value!r}")
        return int(value)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"hyperparameter {name!r} must be in [{bounds[0]:g}, {bounds[1]:g}], got {value!r}")
    return float(value)


def check_input(graph, name, x, domain, shape):
    if graph is not None and not hasattr(graph, "num_src"):  # PyG habits: model(x, edge_index)
        got = f"a tensor of shape {tuple(graph.shape)}" if isinstance(graph, torch.Tensor) else type(graph).__name__
        raise TypeError(f"the first argument must be a Graph, got {got}: call the model as "
                        f"model(graph, {name}) with graph = Graph.from_edge_index(edge_index)")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input {name!r} must be a torch.Tensor, got {type(x).__name__}")
    feats = tuple(int(d) for d in shape)
    rows = {"node": lambda: graph.num_src, "edge": lambda: graph.num_edges}.get(domain, lambda: None)()
    if rows is None:
        if tuple(x.shape[x.dim() - len(feats):]) != feats:
            raise ValueError(f"input {name!r} has shape {tuple(x.shape)}; expected (..., {feats})")
        return x
    if tuple(x.shape) != (rows,) + feats:
        raise ValueError(f"input {name!r} has shape {tuple(x.shape)}; expected {(rows,) + feats}")
    return x
