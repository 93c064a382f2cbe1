"""Differential fuzzing: N random programs, each compiled and compared with the reference interpreter.

    python benchmarks/fuzz_differential.py [-n 10000] [--start 0] [--out /tmp/fuzz.jsonl] [--all-graphs]
    python benchmarks/fuzz_differential.py --seeds-from /tmp/fuzz.jsonl   # rerun the failures only

Program `seed` (kokoyi.compiler.fuzz.generate) runs on two graphs: one of kokoyi.differential.GRAPHS
(isolated nodes and a source-only node / multi-edges and a self-loop edge / a hub / no edges, rotating
with the seed) and a random small multigraph; forward values and the gradients of every input and
parameter are compared in float64. Printed at the end: the count per outcome

    agree                     the compiled module equals the interpreter (forward and gradients)
    disagree:<what>           a wrong number, shape or NaN (forward or gradient)
    compile-error             a diagnostic of the checker (the generator wrote a program it refuses)
    refused-after-check       the checker accepted, the lowering refused with a diagnostic
    traceback:compile         the compiler raised something that is not a diagnostic
    construct/forward/backward  the generated module raised
    interpreter[-crash]       the oracle could not run it (a finding about the interpreter)

each split into "known" (a KNOWN_BUGS predicate of tests/known_bugs.py accounts for it) and "new",
then the count per known bug and the seeds of the new failures (rerun one with --start SEED -n 1 -v).
Failures are written one JSON object per line to --out.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000, help="number of programs (default 1000)")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--out", default="/tmp/kokoyi-fuzz.jsonl", help="failures, one JSON object per line")
    ap.add_argument("--all-graphs", action="store_true", help="every graph of GRAPHS plus the random one")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure's program")
    ap.add_argument("--seeds-from", metavar="JSONL", help="rerun the programs of an earlier --out file")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from kokoyi.differential import GRAPHS, fuzz_one, random_graph
    from known_bugs import KNOWN_BUGS, explain

    names = sorted(GRAPHS)
    counts: collections.Counter = collections.Counter()
    per_bug: collections.Counter = collections.Counter()
    features: collections.Counter = collections.Counter()
    new: list = []
    t0 = time.time()
    with open(args.out, "w") as out:
        seeds = range(args.start, args.start + args.n)
        sources: dict = {}
        if args.seeds_from:  # the same programs again (the generator may have changed since)
            sources = {r["seed"]: r["source"] for r in map(json.loads, open(args.seeds_from))}
            seeds = list(sources)
            args.n, args.start = len(seeds), min(seeds, default=0)
        for i, seed in enumerate(seeds):
            rg = random_graph(random.Random(seed))
            graphs = dict(GRAPHS) if args.all_graphs else {names[seed % len(names)]: GRAPHS[names[seed % len(names)]]}
            graphs["random"] = rg
            r = fuzz_one(seed, graphs, source=sources.get(seed))
            features.update(r.features)
            known = explain(r)
            if r.category == "agree":
                counts["agree"] += 1
            else:
                counts[(r.category, "known" if known else "new")] += 1
                per_bug.update(known)
                out.write(json.dumps({"seed": seed, "category": r.category, "known": known, "detail": r.detail,
                                      "source": r.source}) + "\n")
                if not known:
                    new.append((seed, r.category, r.detail))
                    if args.verbose:
                        print(f"--- seed {seed}: {r.category}: {r.detail}\n{r.source}", flush=True)
            if (i + 1) % 500 == 0:
                print(f"{i + 1} programs, {time.time() - t0:.0f} s, agree {counts['agree']}, "
                      f"new failures {len(new)}", flush=True)
    dt = time.time() - t0
    which = f"the seeds of {args.seeds_from}" if args.seeds_from else f"seeds {args.start}..{args.start + args.n - 1}"
    print(f"\n{args.n} programs ({which}), {dt:.0f} s, "
          f"torch threads 1")
    print(f"  agree: {counts['agree']}")
    for key in sorted(k for k in counts if k != "agree"):
        print(f"  {key[0]} ({key[1]}): {counts[key]}")
    print("known bugs (a program may hit several):")
    for b in KNOWN_BUGS:
        if per_bug[b.name]:
            print(f"  {b.name}{' [found by the interpreter]' if b.found_by_interp else ''}: {per_bug[b.name]}")
    print(f"new failures: {len(new)}")
    for seed, cat, detail in new[:50]:
        print(f"  seed {seed}: {cat}: {detail[:200]}")
    print("constructs covered (programs using each):")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(features.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
