"""Slow, obviously correct references for `kokoyi.ops` (Python loops over edges; tests only).

They take the graph's internal-order `src`/`dst` and are written with differentiable torch ops,
so autograd through them gives reference gradients.
"""
from __future__ import annotations

import torch

_BINARY = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
           "mul": lambda x, y: x * y, "div": lambda x, y: x / y}


def _feature_shape(*tensors):
    return tuple(torch.broadcast_shapes(*[tuple(t.shape[1:]) for t in tensors if t is not None]))


def gspmm(graph, op, reduce, u, e):
    u = None if op == "copy_e" else u
    e = None if op == "copy_u" else e
    shape = _feature_shape(u, e)
    ref = u if u is not None else e
    rows = []
    for v in range(graph.num_dst):
        msgs = []
        for k in range(graph.num_edges):
            if int(graph.dst[k]) != v:
                continue
            s = int(graph.src[k])
            if op == "copy_u":
                m = u[s]
            elif op == "copy_e":
                m = e[k]
            else:
                m = _BINARY[op](u[s], e[k])
            msgs.append(m.expand(shape))
        if not msgs:
            rows.append(ref.new_zeros(shape))
            continue
        stacked = torch.stack(msgs)
        rows.append({"sum": lambda t: t.sum(0), "mean": lambda t: t.mean(0),
                     "max": lambda t: t.amax(0), "min": lambda t: t.amin(0)}[reduce](stacked))
    return torch.stack(rows) if rows else ref.new_zeros((0,) + shape)


def _pick(graph, x, target, k):
    if target == "u":
        return x[int(graph.src[k])]
    if target == "v":
        return x[int(graph.dst[k])]
    return x[k]


def gsddmm(graph, op, lhs, rhs, lhs_target="u", rhs_target="v"):
    out = []
    for k in range(graph.num_edges):
        x = None if op == "copy_rhs" else _pick(graph, lhs, lhs_target, k)
        y = None if op == "copy_lhs" else _pick(graph, rhs, rhs_target, k)
        if op == "copy_lhs":
            out.append(x)
        elif op == "copy_rhs":
            out.append(y)
        elif op == "dot":
            out.append((x * y).sum(-1, keepdim=True))
        else:
            out.append(_BINARY[op](x, y))
    if not out:
        lhs = None if op == "copy_rhs" else lhs
        rhs = None if op == "copy_lhs" else rhs
        x = lhs if lhs is not None else rhs
        shape = _feature_shape(lhs, rhs)
        if op == "dot":
            shape = shape[:-1] + (1,)
        return x.new_zeros((0,) + shape)
    return torch.stack(out)


def edge_softmax(graph, scores, self_scores=None):
    alpha = [None] * graph.num_edges
    self_alpha = []
    for v in range(graph.num_dst):
        ks = [k for k in range(graph.num_edges) if int(graph.dst[k]) == v]
        group = [scores[k] for k in ks]
        if self_scores is not None:
            group.append(self_scores[v])
        if not group:
            continue
        soft = torch.softmax(torch.stack(group), dim=0)
        for i, k in enumerate(ks):
            alpha[k] = soft[i]
        if self_scores is not None:
            self_alpha.append(soft[-1])
    edge = torch.stack(alpha) if alpha else scores * 0.0
    if self_scores is None:
        return edge
    return edge, torch.stack(self_alpha) if self_alpha else self_scores.new_zeros(self_scores.shape)
