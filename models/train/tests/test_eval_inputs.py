"""eval_onnx's checks of a dataset folder: each bad labels.csv or image is refused with a message
naming the file and line, before any embedding (never a traceback, never a JSON line for another
protocol than the folder's columns say)."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import eval_onnx
import metrics


@pytest.fixture
def model(tmp_path):
    # embed_cached is replaced in every test below, so any existing file stands in for the model
    m = tmp_path / "m.onnx"
    m.write_bytes(b"x")
    return m


@pytest.fixture
def no_embedding(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("embedded before the input was checked")
    monkeypatch.setattr(eval_onnx, "embed_cached", fail)


def write(folder, header, rows, images=True):
    folder.mkdir(exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    if images:
        for r in rows:
            if r and r[0]:
                Image.fromarray(np.full((8, 8), 100, np.uint8)).save(folder / r[0])


def run(folder, model, *extra):
    return eval_onnx.main(["--dataset", str(folder), "--model", str(model), "--n-boot", "5", *extra])


@pytest.mark.parametrize("header,rows,message", [
    (["file", "label", "class_name"], [["a.png", "1"]], r"line 2: empty 'class_name'"),
    (["file", "label", "class_name"], [["a.png", "1", "x"], ["", "1", "x"]], r"line 3: empty 'file'"),
    (["file", "label", "class_name", "fold"], [["a.png", "1", "x", "1"], ["b.png", "1", "x", ""]],
     r"line 3: empty 'fold'"),
    (["file", "label", "class_name", "patient_id"], [["a.png", "1", "x", "p"], ["b.png", "1", "x", ""]],
     r"line 3: empty 'patient_id'"),
    (["file", "label", "class_name"], [["a.png", "1", "x"], ["b.png", "2", "x"]], r"labels 1 and 2 are both named 'x'"),
    (["file", "label", "class_name"], [["a.png", "1", "x"], ["b.png", "1", "y"]], r"label 1 is named 'y'"),
    (["file", "label", "class_name", "fold"], [["a.png", "1", "x", "5"], ["b.png", "2", "y", "5"]],
     r"every row is in fold 5"),
])
def test_a_bad_labels_csv_is_refused_before_embedding(tmp_path, model, no_embedding, header, rows, message):
    write(tmp_path / "d", header, rows)
    with pytest.raises(SystemExit, match=message):
        run(tmp_path / "d", model)


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path, model, no_embedding):
    d = tmp_path / "d"
    d.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "a.png")
    (d / "labels.csv").write_text("file,label,class_name\n\na.png,1,x\n\nb.png,one,y\n")
    with pytest.raises(SystemExit, match=r"line 5: label and fold must be integers"):
        run(d, model)


def test_missing_folder_labels_and_images_are_named(tmp_path, model, no_embedding):
    with pytest.raises(SystemExit, match="dataset folder not found"):
        run(tmp_path / "nope", model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="has no labels.csv"):
        run(tmp_path / "empty", model)
    write(tmp_path / "d", ["file", "label", "class_name"],
          [[f"{i}.png", "1", "x"] for i in range(13)], images=False)
    with pytest.raises(SystemExit, match=r"13 image\(s\) named in labels.csv not found:(?s:.*)/0.png(?s:.*)and 3 more"):
        run(tmp_path / "d", model)


def test_pooled_folders_must_agree_on_their_columns(tmp_path, model, no_embedding):
    write(tmp_path / "a", ["file", "label", "class_name", "patient_id", "fold"], [["a.png", "1", "x", "p", "5"]])
    write(tmp_path / "b", ["file", "label", "class_name", "patient_id"], [["b.png", "1", "x", "q"]])
    with pytest.raises(SystemExit, match="differ in their fold/patient_id columns"):
        eval_onnx.main(["--dataset", str(tmp_path / "a"), "--dataset", str(tmp_path / "b"), "--model", str(model)])
    with pytest.raises(SystemExit, match="--query-fold needs a fold column"):
        run(tmp_path / "b", model, "--query-fold", "1")


def test_an_image_that_does_not_decode_is_named(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    with pytest.raises(SystemExit, match=r"a.dcm: cannot decode as an image \(a DICOM file"):
        eval_onnx._preprocess_or_exit(str(d / "a.dcm"), 224)
    (d / "b.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit, match=r"b.png: cannot decode as an image: "):
        eval_onnx._preprocess_or_exit(str(d / "b.png"), 224)


def test_queries_without_a_relevant_item_are_counted_apart(tmp_path, model, monkeypatch, capsys):
    # two classes, one of which has a single image: under leave-one-out its query has nothing relevant
    write(tmp_path / "d", ["file", "label", "class_name"], [["a.png", "1", "x"], ["b.png", "1", "x"], ["c.png", "2", "y"]])
    monkeypatch.setattr(eval_onnx, "embed_cached",
                        lambda m, paths, *a, **k: np.eye(3, dtype=np.float32)[[0, 0, 1]] + 0.01 * np.eye(3)[:, :3])
    assert run(tmp_path / "d", model) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out.strip().splitlines()[-1])
    assert res["n_queries"] == 3 and res["n_map_queries"] == 2 and res["map"] == 1.0
    assert res["per_class"]["y"]["n_map_queries"] == 0 and res["per_class"]["y"]["map"] is None
    assert "1 of 3 queries have no image of their class" in cap.err
    assert "fewer than 10; P@10 still divides by 10" in cap.err


def test_summarise_counts_map_queries():
    pq = {"ap": np.array([1.0, np.nan, 0.5]), "p10": np.array([0.1, 0.0, 0.2])}
    res = metrics.summarise(pq, np.array([1, 2, 1]), {1: "a", 2: "b"}, n_boot=5)
    assert (res["n_queries"], res["n_map_queries"]) == (3, 2)
    assert res["per_class"]["b"]["n_map_queries"] == 0
