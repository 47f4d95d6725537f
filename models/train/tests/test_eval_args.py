"""eval_onnx's command line: bad option values, a --save-embeddings path that cannot be written and a
file that is not an embedding model are refused with a message (SystemExit), never a traceback, and
before the embedding run; labels.csv column names are read as `cbmir load` reads them; and
`npm run eval:model` takes relative paths from the folder it was typed in."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import eval_onnx

REPO = Path(__file__).resolve().parents[3]
# A 1 KB embedding graph: `image` [N,1,32,32] -> `embedding` [N,256] (test/fixtures/models/README.md)
TINY = REPO / "test" / "fixtures" / "models" / "tiny32-0.0.1.onnx"


def dataset(folder: Path, header="file,label,class_name", n=4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.fromarray(np.full((40, 40), 30 + 50 * i, np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{i % 2},{'ab'[i % 2]}")
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


@pytest.fixture
def no_embedding(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("embedded before the input was checked")
    monkeypatch.setattr(eval_onnx, "embed_cached", fail)


def run(folder, model, *extra):
    return eval_onnx.main(["--dataset", str(folder), "--model", str(model), "--n-boot", "5", "--no-cache", *extra])


@pytest.mark.parametrize("option,value", [("--batch", "0"), ("--batch", "-1"), ("--threads", "0"),
                                          ("--n-boot", "0"), ("--batch", "two")])
def test_counts_must_be_positive_integers(tmp_path, no_embedding, capsys, option, value):
    with pytest.raises(SystemExit) as e:
        run(dataset(tmp_path / "d"), TINY, option, value)
    assert e.value.code == 2  # argparse's usage error
    assert f"argument {option}" in capsys.readouterr().err


def test_save_embeddings_path_is_checked_before_embedding(tmp_path, no_embedding):
    d = dataset(tmp_path / "d")
    with pytest.raises(SystemExit, match=r"--save-embeddings .*/missing/e\.npy: folder .*/missing does not exist"):
        run(d, TINY, "--save-embeddings", str(tmp_path / "missing" / "e.npy"))
    (tmp_path / "e.npy").mkdir()
    with pytest.raises(SystemExit, match=r"e\.npy: is a folder"):
        run(d, TINY, "--save-embeddings", str(tmp_path / "e.npy"))


def test_a_file_that_is_not_an_onnx_model_is_named(tmp_path):
    not_onnx = tmp_path / "README.md"
    not_onnx.write_text("# not a model\n")
    with pytest.raises(SystemExit, match=r"README\.md: onnxruntime cannot load it as an ONNX model: .*"):
        run(dataset(tmp_path / "d"), not_onnx)


def test_a_model_without_the_embedding_contract_is_named(tmp_path):
    # As the heatmap graph shipped beside the model: two feature-map inputs, no `image`, no `embedding`.
    g = helper.make_graph(
        [helper.make_node("Add", ["fmap_q", "fmap_r"], ["s"])], "heatmap-like",
        [helper.make_tensor_value_info("fmap_q", TensorProto.FLOAT, [1, 4, 7, 7]),
         helper.make_tensor_value_info("fmap_r", TensorProto.FLOAT, [1, 4, 7, 7])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 4, 7, 7])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "heatmap-x-0.0.1.onnx"
    onnx.save(m, str(path))
    with pytest.raises(SystemExit, match=r"not an embedding model: eval:model needs one input 'image' \[N,1,S,S\] "
                                         r"and an output 'embedding'; this graph has inputs fmap_q \[1, 4, 7, 7\], "
                                         r"fmap_r \[1, 4, 7, 7\] and outputs s"):
        run(dataset(tmp_path / "d"), path)


@pytest.mark.parametrize("header", ["File,Label,Class_Name", "file, label, class_name", " FILE ,label,CLASS_NAME"])
def test_column_names_are_read_as_cbmir_load_reads_them(tmp_path, header, capsys):
    assert run(dataset(tmp_path / "d", header), TINY) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_queries"] == 4 and res["protocol"] == "leave-one-out"


def test_a_column_named_twice_is_refused(tmp_path, no_embedding):
    with pytest.raises(SystemExit, match=r"names column\(s\) 'file' twice"):
        run(dataset(tmp_path / "d", "file,label,class_name,File"), TINY)


def test_npm_run_eval_model_takes_relative_paths_from_where_it_was_typed(tmp_path):
    dataset(tmp_path / "d")
    env = {**os.environ, "npm_lifecycle_event": "eval:model", "INIT_CWD": str(tmp_path)}
    args = ["bash", str(REPO / "models" / "train" / "eval.sh"), "--dataset", "d", "--model", str(TINY),
            "--no-cache", "--n-boot", "5", "--save-embeddings", "e.npy"]
    r = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["n_queries"] == 4
    assert np.load(tmp_path / "e.npy").shape == (4, 256)
    # Run by another program (bench/eval-live.ts) under another npm script, the paths stay its own.
    r = subprocess.run(args, cwd=REPO, env={**env, "npm_lifecycle_event": "eval:live"}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "dataset folder not found: d" in r.stderr
