"""The researcher's workflow (issue 12): training output, checkpoints and models as files, eval and
predict, own data, PyG/DGL interop, CLI errors, and a torch-free `kokoyi check`.

Every "fresh process" check runs `python` in a subprocess, so nothing compiled in this process helps.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kokoyi
from kokoyi.cli import main
from kokoyi.datasets import DatasetError, synthetic
from kokoyi.datasets.files import load_data
from kokoyi.report import read_log
from kokoyi.train import TrainError, accuracies, evaluate_logits, train

ROOT = Path(__file__).resolve().parents[1]
GCN_FILE = ROOT / "examples" / "gcn.kky"
PLANETOID_RAW = ROOT.parent / "shared" / "data" / "planetoid" / "raw"


def _python(code: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=cwd or ROOT)


def _kokoyi(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kokoyi", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd or ROOT)


@pytest.fixture(scope="module")
def data():
    return synthetic(0)


@pytest.fixture(scope="module")
def GCN():
    return kokoyi.load(GCN_FILE)["GCN"]


# --------------------------------------------------------------------------- 1. training output

@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_log_file_has_every_epoch_numbered_from_1(GCN, data, tmp_path, suffix):
    log = tmp_path / f"run{suffix}"
    r = train(GCN, data, epochs=6, progress=False, log=log, hypers={"d_h": 8})
    rows = read_log(log)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "val_loss", "train_acc", "val_acc", "test_acc"):
        assert [row[key] for row in rows] == pytest.approx(r.history[key], rel=1e-6), key
    assert all(row["seconds"] > 0 for row in rows)


def test_plot_has_one_point_per_epoch(GCN, data, tmp_path):
    from PIL import Image

    r = train(GCN, data, epochs=7, progress=False, hypers={"d_h": 8})
    fig = r.plot(tmp_path / "curve.png")
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() != ":"]
    assert len(lines) == 5  # train loss, val loss; train, val, test accuracy
    assert all(list(ln.get_xdata()) == [1, 2, 3, 4, 5, 6, 7] for ln in lines)
    assert list(lines[0].get_ydata()) == r.history["loss"]
    png = Image.open(tmp_path / "curve.png")
    assert png.format == "PNG" and png.text["Description"] == "kokoyi training curve: epochs=7"


def test_cli_train_outputs_log_plot_json_runs(tmp_path, capsys):
    from PIL import Image

    log, plot = tmp_path / "h.jsonl", tmp_path / "c.png"
    argv = ["train", str(GCN_FILE), "--epochs", "5", "--hyper", "d_h=8", "--runs", "2", "--threads", "1",
            "--log", str(log), "--plot", str(plot), "--json", "--no-progress", "--every", "1", "--seed", "3"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(argv) == 0
        assert torch.get_num_threads() == 1  # --threads 1
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    r = json.loads(out)  # stdout is the JSON alone; epoch lines went to stderr
    assert [ln.split()[:4] for ln in err.splitlines()][:2] == [["run", "1", "epoch", "1"], ["run", "1", "epoch", "2"]]
    assert r["runs"] == 2 and r["seeds"] == [3, 4] and len(r["per_run"]) == 2
    accs = [run["test_acc"] for run in r["per_run"]]
    assert r["test_acc"] == pytest.approx(np.mean(accs), abs=1e-6)
    assert r["test_acc_std"] == pytest.approx(np.std(accs, ddof=1), abs=1e-6)
    for run in r["per_run"]:
        assert [h["epoch"] for h in run["history"]] == [1, 2, 3, 4, 5]
        best = run["history"][run["best_epoch"] - 1]  # best_epoch counts from 1, like the history
        assert best["test_acc"] == run["test_acc"] and best["train_acc"] == run["train_acc"]
    rows = read_log(log)
    assert [(row["run"], row["epoch"]) for row in rows] == [(k, e) for k in (1, 2) for e in range(1, 6)]
    assert Image.open(plot).text["Description"] == "kokoyi training curve: epochs=5"


def test_an_early_stop_still_prints_its_last_epoch(GCN, data, capsys):
    r = train(GCN, data, epochs=500, patience=2, lr=0.5, every=100, hypers={"d_h": 4}, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert r.epochs < 100 and [int(ln.split()[1]) for ln in lines] == [1, r.epochs]


def test_cli_human_output_runs_mean_std(capsys):
    assert main(["train", str(GCN_FILE), "--epochs", "3", "--runs", "3", "--no-progress", "--every", "0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and " ± " in out[0] and "over 3 runs, seeds 0..2" in out[0]


# --------------------------------------------------------------------------- 2. checkpoints

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """`kokoyi train examples/gcn.kky --save DIR` on the synthetic graph (20 epochs)."""
    folder = tmp_path_factory.mktemp("ckpt") / "gcn"
    argv = ["train", str(GCN_FILE), "--epochs", "20", "--save", str(folder), "--json", "--no-progress"]
    assert main(argv) == 0
    return folder


def test_checkpoint_folder_holds_everything(saved):
    assert sorted(p.name for p in saved.iterdir()) == ["checkpoint.json", "model.kky", "split.npz", "state_dict.pt"]
    info = json.loads((saved / "checkpoint.json").read_text())
    assert info["model"] == "GCN" and info["hypers"] == {"d_in": 32, "d_h": 16, "C": 7, "p": 0.5}
    assert info["dataset"]["name"] == "synthetic" and info["kokoyi_version"] == kokoyi.__version__
    assert {"test_acc", "val_acc", "train_acc", "best_epoch", "epochs"} <= set(info["metrics"])
    assert info["train"]["epochs"] == 20 and info["train"]["threads"] >= 1  # eval reuses the thread count
    assert (saved / "model.kky").read_text() == GCN_FILE.read_text()


@pytest.fixture(scope="module")
def fresh(saved, GCN, data, tmp_path_factory):
    """One fresh process that reloads the checkpoint folder and a `torch.save`d compiled model."""
    tmp = tmp_path_factory.mktemp("fresh")
    torch.manual_seed(0)
    model = GCN(d_in=32, d_h=8, C=7).eval()
    torch.save(model, tmp / "m.pt")
    code = (f"import json, torch, kokoyi\nfrom kokoyi.datasets import synthetic\n"
            f"from kokoyi.train import accuracies, evaluate_logits\nd = synthetic(0)\n"
            f"m = kokoyi.load_model({str(saved)!r})\n"
            f"acc = accuracies(evaluate_logits(m, d), d)['test_acc']\n"
            f"p = torch.load({str(tmp / 'm.pt')!r}, weights_only=False)\n"
            f"torch.save(p(d.graph(), d.x), {str(tmp / 'out.pt')!r})\n"
            f"print(json.dumps({{'acc': repr(acc), 'loaded': repr(m), 'pickled': repr(p)}}))")
    proc = _python(code, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "want": model(data.graph(), data.x), "out": tmp / "out.pt"}


def test_fresh_process_reloads_and_reproduces_test_accuracy_exactly(saved, fresh, capsys):
    info = json.loads((saved / "checkpoint.json").read_text())
    assert float(fresh["acc"]) == info["metrics"]["test_acc"]  # exactly
    assert fresh["loaded"].startswith("GCN(d_in=32, d_h=16, C=7, p=0.5)")  # print(model) shows the hypers
    assert main(["eval", str(saved), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["test_acc"] == r["saved_test_acc"] and r["dataset"] == "synthetic"


def test_torch_save_of_a_compiled_model_loads_in_a_fresh_process(fresh, GCN, data):
    assert fresh["pickled"].startswith("GCN(d_in=32, d_h=8, C=7, p=0.5)")
    assert torch.equal(torch.load(fresh["out"]), fresh["want"])
    import copy

    model = GCN(d_in=32, d_h=8, C=7).eval()
    twin = copy.deepcopy(model)
    assert type(twin) is type(model) and torch.equal(twin(data.graph(), data.x), model(data.graph(), data.x))


def test_predict_writes_one_prediction_per_node(saved, data, tmp_path):
    model = kokoyi.load_model(saved)
    want = evaluate_logits(model, data).argmax(1).numpy()
    assert main(["predict", str(saved), "--dataset", "synthetic", "-o", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "node,prediction,probability" and len(lines) == data.num_nodes + 1
    assert [int(ln.split(",")[1]) for ln in lines[1:]] == want.tolist()
    assert main(["predict", str(saved), "-o", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz") as z:
        assert z["prediction"].tolist() == want.tolist() and z["logits"].shape == (data.num_nodes, 7)
    # own data without labels or masks: a graph and features are enough to predict
    np.savez(tmp_path / "unlabelled.npz", edge_index=data.edge_index.numpy(), x=data.x.numpy())
    assert main(["predict", str(saved), "--data", str(tmp_path / "unlabelled.npz"), "-o", str(tmp_path / "u.npy")]) == 0
    assert np.load(tmp_path / "u.npy").tolist() == want.tolist()


def test_eval_and_predict_errors(saved, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "is not a folder (make one with kokoyi train ... --save DIR)" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.kky").write_text("x")
    assert main(["eval", str(tmp_path / "half")]) == 2
    assert "lacks checkpoint.json, state_dict.pt" in capsys.readouterr().err
    import shutil

    shutil.copytree(saved, tmp_path / "edited")
    info = json.loads((tmp_path / "edited" / "checkpoint.json").read_text())
    info["hypers"]["d_h"] = 0
    (tmp_path / "edited" / "checkpoint.json").write_text(json.dumps(info))
    assert main(["eval", str(tmp_path / "edited")]) == 2
    assert "checkpoint.json: the hyperparameters" in capsys.readouterr().err
    info["hypers"]["d_h"] = 8  # fits the model, not the saved weights
    (tmp_path / "edited" / "checkpoint.json").write_text(json.dumps(info))
    assert main(["eval", str(tmp_path / "edited")]) == 2
    assert "cannot load the weights" in capsys.readouterr().err
    assert main(["predict", str(saved), "-o", str(tmp_path / "p.txt")]) == 2
    assert "-o " in capsys.readouterr().err
    np.savez(tmp_path / "wide.npz", edge_index=np.array([[0], [1]]), x=np.ones((3, 5), np.float32))
    assert main(["predict", str(saved), "--data", str(tmp_path / "wide.npz"), "-o", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "wide.npz: the saved model GCN cannot run on it" in err and "(3, 32)" in err


# --------------------------------------------------------------------------- 3. own data

def _arrays(n=6):
    rng = np.random.default_rng(0)
    return {"edge_index": np.array([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]]),
            "x": rng.standard_normal((n, 4)).astype(np.float32), "y": np.array([0, 1, 2, 0, 1, 2]),
            "train_mask": np.array([1, 1, 1, 0, 0, 0], bool), "val_mask": np.array([0, 0, 0, 1, 1, 0], bool),
            "test_mask": np.array([0, 0, 0, 0, 0, 1], bool)}


def _csv_folder(folder: Path, a: dict, header=True):
    folder.mkdir()
    (folder / "edges.csv").write_text("source,target\n" * header + "".join(f"{s},{t}\n" for s, t in a["edge_index"].T))
    (folder / "features.csv").write_text("".join(",".join(map(str, row)) + "\n" for row in a["x"]))
    split = np.where(a["train_mask"], "train", np.where(a["val_mask"], "val", np.where(a["test_mask"], "test", "")))
    (folder / "labels.csv").write_text("label,split\n" * header + "".join(f"{y},{s}\n" for y, s in zip(a["y"], split)))


def test_own_data_npz_csv_and_pyg_agree(tmp_path):
    pyg = pytest.importorskip("torch_geometric.data")
    a = _arrays()
    np.savez(tmp_path / "g.npz", **a)
    _csv_folder(tmp_path / "g", a)
    torch.save(pyg.Data(**{k: torch.from_numpy(v) for k, v in a.items()}), tmp_path / "g.pt")
    loaded = [load_data(tmp_path / "g.npz"), load_data(tmp_path / "g"), load_data(tmp_path / "g" / "edges.csv"),
              load_data(tmp_path / "g.pt")]
    for d in loaded:
        assert torch.equal(d.edge_index, torch.from_numpy(a["edge_index"]))
        assert torch.allclose(d.x, torch.from_numpy(a["x"])) and d.y.tolist() == a["y"].tolist()
        assert d.test_mask.tolist() == a["test_mask"].tolist() and d.num_classes == 3


def test_cli_trains_on_own_data(tmp_path, capsys):
    np.savez(tmp_path / "g.npz", **_arrays())
    assert main(["train", str(GCN_FILE), "--data", str(tmp_path / "g.npz"), "--epochs", "3", "--json",
                 "--no-progress", "--hyper", "d_h=4"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["dataset"] == "g" and r["hypers"]["d_in"] == 4 and r["hypers"]["C"] == 3


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y"), "g.npz: no array 'y'; a graph file holds edge_index, x, y, train_mask"),
    (lambda a: a.update(x=np.ones(6, np.float32)), "g.npz: array 'x' must be (N, F) numbers"),
    (lambda a: a.update(edge_index=np.array([[0, 9], [1, 2]])),
     "g.npz: array 'edge_index' refers to nodes 0..9, but 'x' in "),
    (lambda a: a.update(edge_index=np.zeros((3, 2), np.int64)), "array 'edge_index' must be (2, E) integers"),
    (lambda a: a.update(y=np.array([0, 1, 2])), "g.npz: array 'y' must be (6,) integer labels"),
    (lambda a: a.update(val_mask=np.ones(6)), "g.npz: array 'val_mask' must be (6,) booleans"),
    (lambda a: a.update(train_mask=np.zeros(6, bool)), "array 'train_mask' selects no node"),
])
def test_bad_npz_names_file_and_array(tmp_path, change, message):
    a = _arrays()
    change(a)
    np.savez(tmp_path / "g.npz", **a)
    with pytest.raises(DatasetError) as e:
        load_data(tmp_path / "g.npz")
    assert message in str(e.value)


def test_bad_csv_folder_and_other_files(tmp_path, capsys):
    a = _arrays()
    _csv_folder(tmp_path / "g", a)
    (tmp_path / "g" / "labels.csv").write_text("0,train\n1,maybe\n")
    with pytest.raises(DatasetError, match=r"labels.csv: line 2: split must be train, val, test or empty, got 'maybe'"):
        load_data(tmp_path / "g")
    (tmp_path / "g" / "labels.csv").write_text("0,train\n1,val\n2,test\n,\n,\n0,\n")  # unlabelled nodes
    d = load_data(tmp_path / "g")
    assert d.y.tolist() == [0, 1, 2, 0, 0, 0] and d.train_mask.tolist() == [True] + [False] * 5
    (tmp_path / "g" / "labels.csv").write_text(",train\n1,val\n2,test\n,\n,\n0,\n")
    with pytest.raises(DatasetError, match=r"labels.csv: line 1: expected an integer label, got ''"):
        load_data(tmp_path / "g")

    (tmp_path / "g" / "labels.csv").write_text("0,train\n1,val\n")
    with pytest.raises(DatasetError, match=r"labels.csv: array 'y' must be \(6,\) integer labels .* got shape \(2,\)"):
        load_data(tmp_path / "g")
    (tmp_path / "g" / "features.csv").unlink()
    with pytest.raises(DatasetError, match="missing features.csv or features.npy; a data folder holds edges.csv"):
        load_data(tmp_path / "g")
    (tmp_path / "f.txt").write_text("")
    with pytest.raises(DatasetError, match=r"f.txt: unknown data format .txt"):
        load_data(tmp_path / "f.txt")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="bad.npz: cannot read as a numpy .npz archive"):
        load_data(tmp_path / "bad.npz")
    torch.save({"x": torch.ones(2, 2), "f": print}, tmp_path / "evil.pt")  # a pickle with code: refused
    with pytest.raises(DatasetError, match="evil.pt: cannot read .*: it holds print, which is not plain data"):
        load_data(tmp_path / "evil.pt")
    assert main(["train", str(GCN_FILE), "--data", str(tmp_path / "nope.npz"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == f"kokoyi: {tmp_path / 'nope.npz'}: no such file or folder"


# --------------------------------------------------------------------------- 4. interop

def test_graph_from_pyg_and_train_accepts_a_pyg_data(GCN, data):
    pyg = pytest.importorskip("torch_geometric.data")
    d = pyg.Data(x=data.x, edge_index=data.edge_index, y=data.y, train_mask=data.train_mask,
                 val_mask=data.val_mask, test_mask=data.test_mask)
    g, ref = kokoyi.Graph.from_pyg(d), data.graph()
    assert g.num_src == ref.num_src and torch.equal(g.src, ref.src) and torch.equal(g.dst, ref.dst)
    a = train(GCN, d, epochs=3, progress=False, hypers={"d_h": 8})
    b = train(GCN, data, epochs=3, progress=False, hypers={"d_h": 8})
    assert a.history == b.history
    with pytest.raises(TrainError, match="the PyG Data has no train_mask"):
        train(GCN, pyg.Data(x=data.x, edge_index=data.edge_index, y=data.y), epochs=1, progress=False)


def test_graph_from_dgl():
    dgl = pytest.importorskip("dgl")
    src, dst = torch.tensor([0, 1, 2, 2]), torch.tensor([1, 2, 0, 1])
    g = kokoyi.Graph.from_dgl(dgl.graph((src, dst), num_nodes=4))
    ref = kokoyi.Graph.from_edge_index(torch.stack([src, dst]), num_nodes=4)
    assert g.num_src == 4 and torch.equal(g.src, ref.src) and torch.equal(g.eid, ref.eid)


def test_graph_from_dgl_duck_typed():
    """Without DGL: an object with DGL's graph interface (what from_dgl reads)."""
    class FakeDGL:
        ntypes, etypes = ["_N"], ["_E"]

        def edges(self):
            return torch.tensor([0, 1]), torch.tensor([1, 2])

        def num_nodes(self):
            return 4

    g = kokoyi.Graph.from_dgl(FakeDGL())
    assert g.num_src == 4 and g.src.tolist() == [0, 1] and g.dst.tolist() == [1, 2]
    with pytest.raises(TypeError, match="expected a dgl.DGLGraph"):
        kokoyi.Graph.from_dgl(object())


@pytest.mark.parametrize("order", ["x_first", "edge_index_first"])
def test_pyg_calling_habits_are_explained(GCN, data, order):
    model = GCN(d_in=32, d_h=8, C=7)
    args = (data.x, data.edge_index) if order == "x_first" else (data.edge_index, data.x)
    with pytest.raises(TypeError) as e:
        model(*args)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("the first argument must be a kokoyi.Graph, got a tensor of shape")
    assert "model(graph, x) with graph = kokoyi.Graph.from_edge_index(edge_index)" in msg


def test_a_pyg_data_as_the_graph_is_explained(GCN, data):
    pyg = pytest.importorskip("torch_geometric.data")
    model = GCN(d_in=32, d_h=8, C=7)
    with pytest.raises(TypeError, match=r"got a PyG Data: call the model as model\(kokoyi.Graph.from_pyg\(data\), data.x\)"):
        model(pyg.Data(x=data.x, edge_index=data.edge_index), data.x)


# --------------------------------------------------------------------------- 5. CLI errors

@pytest.mark.parametrize("hyper, message", [
    ("p=1.5", "kokoyi: hyperparameter p: expected a value in [0, 1] (it is a dropout probability), got '1.5'"),
    ("d_in=100", "kokoyi: hyperparameter d_in=100 disagrees with the data: d_in is the feature width of synthetic (32)"),
    ("d_h=0", "kokoyi: hyperparameter d_h: expected a positive integer (a dimension), got '0'"),
])
def test_hyper_checked_up_front(hyper, message, capsys):
    assert main(["train", str(GCN_FILE), "--hyper", hyper, "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().startswith(message) and out == ""  # refused before any epoch ran


def test_case_insensitive_model_and_dataset_and_version(capsys):
    assert main(["train", str(GCN_FILE), "--model", "gcn", "--dataset", "SYNTHETIC", "--epochs", "1", "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "GCN"
    p = _kokoyi("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"kokoyi {kokoyi.__version__}"


def test_model_names_keep_underscores(tmp_path, capsys):
    text = GCN_FILE.read_text().replace("{GCN}", "{My_GCN-2}")
    f = tmp_path / "my-gcn.kky"
    f.write_text(text)
    assert list(kokoyi.load(f)) == ["My_GCN_2"]
    assert main(["train", str(f), "--model", "my_gcn-2", "--epochs", "1", "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "My_GCN_2"
    f.write_text(GCN_FILE.read_text().replace("{GCN}", "{2GCN}"))
    assert main(["check", str(f)]) == 1
    assert "error: model name '2GCN'" in capsys.readouterr().err


def test_data_and_dataset_together_are_refused(saved, capsys):
    assert main(["train", str(GCN_FILE), "--data", "g.npz", "--dataset", "cora"]) == 2
    assert capsys.readouterr().err.strip() == "kokoyi: give --data PATH (your own graph) or --dataset NAME, not both"
    assert main(["eval", str(saved), "--data", "g.npz", "--dataset", "cora"]) == 2
    assert "not both" in capsys.readouterr().err


def test_bad_output_names_refused_before_training(capsys):
    assert main(["train", str(GCN_FILE), "--log", "run.txt"]) == 2
    assert capsys.readouterr().err.strip() == "kokoyi: --log run.txt: the file name must end in .csv or .jsonl"
    assert main(["train", str(GCN_FILE), "--plot", "c.gif"]) == 2
    assert "--plot c.gif: the file name must end in .png" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["compile", "--standalone"], ["render"]])  # long and short output
def test_no_broken_pipe_when_the_reader_leaves(command):
    p = subprocess.Popen([sys.executable, "-m", "kokoyi", *command, str(ROOT / "examples" / "gat.kky")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    p.stdout.close()  # like `| head` that has already left
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err and p.returncode == 141, err


def test_check_compile_render_never_import_torch():
    commands = [["check"], ["compile"], ["compile", "--explain"], ["render"]]
    code = ("import sys, io, contextlib\nfrom kokoyi.cli import main\n"
            f"for cmd in {commands!r}:\n"
            f"    with contextlib.redirect_stdout(io.StringIO()):\n"
            f"        assert main(cmd + [{str(GCN_FILE)!r}]) == 0, cmd\n"
            "print(sorted(m for m in ('torch', 'numpy', 'scipy') if m in sys.modules))")
    p = _python(code)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr


# --------------------------------------------------------------------------- 6. notebooks and docs

def test_shape_table_lists_intermediates():
    from kokoyi.magics.display import shape_rows

    rows = shape_rows(kokoyi.load(ROOT / "examples" / "gat.kky")["GAT"].__kokoyi__)
    assert ("local", "alpha", "|E|", "per edge, for each k") in rows
    assert ("local", "h", "|V| × K*d_h", "per node") in rows
    assert ("hyper", "p", "", "real = 0.6 in [0, 1]") in rows
    assert [r[1] for r in rows if r[0] in ("local", "output")].count("o") == 1  # the output once


def test_quickstart_is_committed_with_its_outputs():
    """The notebook reads on any viewer without running it (refresh: tools/refresh_notebook.py)."""
    nb = json.loads((ROOT / "examples" / "quickstart.ipynb").read_text(encoding="utf-8"))
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    data = [o.get("data", {}) for o in outputs]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert any("text/latex" in d for d in data)  # the math
    tables = ["".join(d["text/plain"]) for d in data if "kokoyi-shapes" in "".join(d.get("text/html", ""))]
    assert tables and "local   h        |V| × d_h" in tables[0]  # the shape table, intermediates too
    assert any("image/png" in d for d in data)  # the curve
    assert "epoch  200" in text and "test accuracy after reloading" in text
    assert not [o for o in outputs if o["output_type"] == "error"]


def test_standalone_module_explains_the_calling_convention_too(data):
    ns: dict = {}
    exec(compile(kokoyi.to_python(GCN_FILE.read_text(), path="gcn.kky", standalone=True), "gcn_standalone", "exec"), ns)
    model = ns["GCN"](d_in=32, d_h=4, C=7)
    with pytest.raises(TypeError, match=r"^the first argument must be a Graph, got a tensor of shape \(2000, 32\): "
                                        r"call the model as model\(graph, x\) with graph = Graph.from_edge_index"):
        model(data.x, data.edge_index)
    assert model(ns["Graph"].from_edge_index(data.edge_index, num_nodes=2000), data.x).shape == (2000, 7)


@pytest.mark.parametrize("standalone", [False, True])
def test_constructor_refuses_a_dropout_rate_outside_0_1(standalone):
    ns: dict = {}
    if standalone:
        exec(compile(kokoyi.to_python(GCN_FILE.read_text(), path="gcn.kky", standalone=True), "gcn_sa", "exec"), ns)
    GCN = ns["GCN"] if standalone else kokoyi.load(GCN_FILE)["GCN"]
    with pytest.raises(ValueError, match=r"hyperparameter 'p' must be in \[0, 1\]"):
        GCN(d_in=4, d_h=4, C=2, p=1.5)
    assert GCN(d_in=4, d_h=4, C=2, p=1.0).p == 1.0


def test_train_result_repr_is_short_and_counts_epochs_from_1(GCN, data):
    r = train(GCN, data, epochs=4, progress=False, hypers={"d_h": 4})
    text = repr(r)
    assert text.startswith(f"TrainResult(test_acc={r.test_acc:.4f}, val_acc={r.val_acc:.4f}, "
                           f"best epoch {r.best_epoch + 1} of 4") and "loss" not in text
