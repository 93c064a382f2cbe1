"""Run a notebook top to bottom in a temporary folder and write it back WITH its outputs, so that it
reads on any viewer (GitHub, nbviewer) without being run: `python tools/refresh_notebook.py
examples/quickstart.ipynb`. The kernel is this interpreter (a kernelspec in a temporary JUPYTER_PATH);
files the notebook writes (exports, checkpoints) stay in the temporary folder."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]


def refresh(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = root / "data" / "kernels" / "kokoyi-refresh"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python"}))
        for var, sub in [("IPYTHONDIR", "ipython"), ("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_PATH", "data"), ("MPLCONFIGDIR", "mpl")]:
            (root / sub).mkdir(exist_ok=True)
            os.environ[var] = str(root / sub)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        work = root / "work"
        work.mkdir()
        nb = nbformat.read(path, as_version=4)
        kernelspec = nb.metadata.get("kernelspec")
        nbclient.NotebookClient(nb, kernel_name="kokoyi-refresh", timeout=600,
                                resources={"metadata": {"path": str(work)}}).execute()
        if kernelspec is not None:
            nb.metadata["kernelspec"] = kernelspec  # keep the portable "python3" kernel name
        nb.metadata.pop("widgets", None)  # widget state is not needed to read the notebook
        nbformat.write(nb, path)


if __name__ == "__main__":
    for arg in sys.argv[1:] or [str(REPO / "examples" / "quickstart.ipynb")]:
        refresh(Path(arg))
        print(f"{arg}: executed, outputs written")
