"""Entity classification on RDF graphs (the R-GCN paper's AIFB, MUTAG, BGS, AM), read with rdflib.

The folder holds an N-Triples file (`*_stripped.nt.gz`: the triples without the label relation) and the
paper's split `trainingSet.tsv` / `testSet.tsv` (columns: entity URI, id, label URI). As PyG's `Entities`
does: nodes are every subject and object, relations are the predicates sorted by decreasing frequency
(ties by name), and each triple (s, p, o) gives two edges, s -> o of relation 2p and o -> s of relation
2p + 1 (so R = 2 x predicates). Labels are numbered by sorted label URI. rdflib is imported here only.
"""
from __future__ import annotations

import csv
import gzip
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kokoyi.datasets.base import DatasetError


@dataclass
class EntityDataset:
    edge_index: torch.Tensor  # (2, E) int64
    etype: torch.Tensor  # (E,) int64 in 0..num_relations-1
    num_nodes: int
    num_relations: int
    train_idx: torch.Tensor
    train_y: torch.Tensor
    test_idx: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    name: str

    def graph(self):
        from kokoyi.graph import Graph
        return Graph.from_edge_index(self.edge_index, self.num_nodes).set_edge_types(self.etype, self.num_relations)


def load_entities(folder, name: str | None = None) -> EntityDataset:
    folder = Path(folder)
    name = name or folder.name
    triples = sorted(folder.glob("*.nt.gz")) + sorted(folder.glob("*.nt"))
    if not triples:
        raise DatasetError(f"{folder}: no N-Triples file (*.nt.gz or *.nt)")
    for split in ("trainingSet.tsv", "testSet.tsv"):
        if not (folder / split).exists():
            raise DatasetError(f"{folder}: missing {split}")
    try:
        import rdflib
    except ImportError:
        raise DatasetError("reading RDF needs rdflib: pip install rdflib") from None
    g = rdflib.Graph()
    path = triples[0]
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            g.parse(f, format="nt")
    except Exception as e:  # rdflib raises several parser errors
        raise DatasetError(f"{path}: not readable as N-Triples ({type(e).__name__}: {e})") from None
    freq = Counter(g.predicates())
    relations = sorted(freq, key=lambda p: (-freq[p], str(p)))
    rel_id = {p: i for i, p in enumerate(relations)}
    # a literal and a URI may share their text: nodes are the RDF terms, not their strings
    nodes = sorted(set(g.subjects()) | set(g.objects()), key=lambda n: (type(n).__name__, str(n)))
    node_id = {n: i for i, n in enumerate(nodes)}
    rows = [(node_id[s], node_id[o], rel_id[p]) for s, p, o in g]
    rows.sort()
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    src = np.concatenate([arr[:, 0], arr[:, 1]])
    dst = np.concatenate([arr[:, 1], arr[:, 0]])
    et = np.concatenate([2 * arr[:, 2], 2 * arr[:, 2] + 1])

    def read(split):
        with open(folder / split, newline="") as f:
            r = list(csv.reader(f, delimiter="\t"))
        if not r or len(r[0]) < 3:
            raise DatasetError(f"{folder / split}: expected a header and tab-separated entity, id, label columns")
        return [(row[0], row[-1]) for row in r[1:] if row]

    train, test = read("trainingSet.tsv"), read("testSet.tsv")
    labels = sorted({lab for _e, lab in train + test})
    lab_id = {lab: i for i, lab in enumerate(labels)}
    missing = [e for e, _l in train + test if rdflib.URIRef(e) not in node_id]
    if missing:
        raise DatasetError(f"{folder}: {len(missing)} labelled entities are not in the graph, e.g. {missing[0]}")

    def tensors(items):
        return (torch.tensor([node_id[rdflib.URIRef(e)] for e, _l in items], dtype=torch.int64),
                torch.tensor([lab_id[lab] for _e, lab in items], dtype=torch.int64))

    (tri, trl), (tei, tel) = tensors(train), tensors(test)
    return EntityDataset(torch.from_numpy(np.stack([src, dst])), torch.from_numpy(et), len(nodes),
                         2 * len(relations), tri, trl, tei, tel, len(labels), name)
