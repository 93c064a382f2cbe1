"""R-GCN on AIFB (entity classification, the R-GCN paper's benchmark: 95.83 % test accuracy).

    python benchmarks/bench_aifb.py [--seeds 10] [--epochs 50] [--d-h 16]

Trains examples/rgcn_aifb.kky on ../shared/data/rdf/aifb with the paper's split (140 train, 36 test
entities) and prints the test accuracy of each seed and their mean ± std.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kokoyi  # noqa: E402
from kokoyi.datasets.rdf import load_entities  # noqa: E402
from kokoyi.train_relational import train_entities  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--d-h", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "rdf" / "aifb"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_entities(args.data, "AIFB")
    Model = kokoyi.load(ROOT / "examples" / "rgcn_aifb.kky")["RGCN"]
    accs = []
    for s in range(args.seeds):
        r = train_entities(Model, data, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, seed=s,
                           hypers={"d_h": args.d_h})
        accs.append(r["test_acc"])
        print(json.dumps({"seed": s, **{k: v for k, v in r.items() if k != "hypers"}}), flush=True)
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"AIFB R-GCN: test accuracy {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} % over {len(accs)} seeds "
          f"(paper: 95.83 %)")


if __name__ == "__main__":
    main()
