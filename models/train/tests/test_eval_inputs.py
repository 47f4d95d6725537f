"""eval_onnx's checks of a dataset folder: each bad labels.csv or image is refused with a message
naming the file and line, before any embedding (never a traceback, never a JSON line for another
protocol than the folder's columns say)."""
import csv
import json
import shutil
from pathlib import Path

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


# --- real images: the figshare-cheng and IXI samples in test/fixtures (36 and 6 slices with folds)
REPO = Path(__file__).resolve().parents[3]
FIGSHARE = REPO / "test" / "fixtures" / "figshare-sample"
IXI = REPO / "test" / "fixtures" / "ixi-sample"


def copy_sample(src, dest, keep=lambda row: True, extra=()):
    """A copy of a sample folder, with the labels.csv rows `keep` passes and `extra` rows (lists) appended."""
    shutil.copytree(src, dest)
    with open(src / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(dest / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if keep(r)] + [list(r) for r in extra])
    return dest


def test_one_class_is_refused(tmp_path, model, no_embedding):
    # IXI normals only: every image retrieved would be relevant, so mAP would be 1.0 whatever the model
    d = copy_sample(IXI, tmp_path / "ixi")
    with pytest.raises(SystemExit, match=r"retrieval by class needs at least two classes, but the database "
                                         r"\(the rows outside fold 5\) holds one only: 'normal' \(label 0\)"):
        run(d, model, "--query-fold", "5")
    # leave-one-patient-out: the whole folder is the database
    rows = list(csv.reader(open(d / "labels.csv", newline="")))
    with open(d / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:4] for r in rows])
    with pytest.raises(SystemExit, match=r"needs at least two classes, but the dataset holds one only: 'normal'"):
        run(d, model)
    # two classes in the folder, one in the database: fold 1 holds meningioma only
    d = copy_sample(FIGSHARE, tmp_path / "fig", keep=lambda r: r[4] == "5" or r[2] == "meningioma")
    with pytest.raises(SystemExit, match=r"the database \(the rows outside fold 5\) holds one only: 'meningioma'"):
        run(d, model, "--query-fold", "5")


def test_an_image_listed_twice_is_refused(tmp_path, model, no_embedding):
    # the same slice again, under another label: it would be its own nearest neighbour
    d = copy_sample(FIGSHARE, tmp_path / "d", extra=[["images/./1.jpg", "2", "glioma", "100360", "1"]])
    with pytest.raises(SystemExit, match=r"labels.csv line 38: duplicate file row \(the same image as .*/d/labels.csv "
                                         r"line 2\): .*1.jpg; labelled 1 \('meningioma'\) there and 2 "
                                         r"\('glioma'\) here"):
        run(d, model, "--query-fold", "5")
    # one folder given twice
    d = copy_sample(FIGSHARE, tmp_path / "e")
    with pytest.raises(SystemExit, match=r"e/labels.csv line 2: duplicate file row \(the same image as .*e/labels.csv "
                                         r"line 2\): .*images/1.jpg; list each image once \(and 35 more"):
        eval_onnx.main(["--dataset", str(d), "--dataset", str(tmp_path / "." / "e"), "--model", str(model)])


def test_a_labels_csv_that_is_not_utf8_is_named(tmp_path, model, no_embedding, monkeypatch, capsys):
    d = copy_sample(FIGSHARE, tmp_path / "d")
    text = (d / "labels.csv").read_text().replace("glioma", "gliome \u00e9tendu")
    (d / "labels.csv").write_bytes(text.encode("cp1252"))  # as a spreadsheet on Windows saves "CSV"
    with pytest.raises(SystemExit, match=r"d/labels.csv is not UTF-8 text \(byte 0xe9 on line 14\); save it as UTF-8"):
        run(d, model)
    (d / "labels.csv").write_bytes(text.encode("utf-16"))  # "Unicode text"
    with pytest.raises(SystemExit, match=r"d/labels.csv is not UTF-8 text \(byte 0xff on line 1\)"):
        run(d, model)
    (d / "folds.csv").write_bytes(b"file,patient_family\nimages/1.jpg,\xe9\n")
    (d / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # UTF-8 with a BOM is fine
    with pytest.raises(SystemExit, match=r"d/folds.csv is not UTF-8 text \(byte 0xe9 on line 2\)"):
        run(d, model)
    (d / "folds.csv").unlink()
    monkeypatch.setattr(eval_onnx, "embed_cached", lambda m, paths, *a, **k: np.eye(len(paths), dtype=np.float32))
    assert run(d, model, "--query-fold", "5") == 0
    assert "gliome \u00e9tendu" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["per_class"]


def unreadable(monkeypatch, *paths):
    """open() refuses these paths as it would a file without read permission (the tests run as root,
    for whom chmod 000 changes nothing)."""
    import builtins

    real, denied = builtins.open, {str(p) for p in paths}

    def fake(file, *a, **k):
        if str(file) in denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *a, **k)
    monkeypatch.setattr(builtins, "open", fake)
    import io as io_
    monkeypatch.setattr(io_, "open", fake)


def test_a_file_that_cannot_be_read_is_named(tmp_path, model, no_embedding, monkeypatch):
    d = copy_sample(FIGSHARE, tmp_path / "d")
    img = d / "images" / "1703.jpg"
    unreadable(monkeypatch, img)
    with pytest.raises(SystemExit, match=r"1703.jpg: cannot read the file \(Permission denied\)"):
        run(d, model, "--query-fold", "5")
    # found while embedding (a file that became unreadable since): the same message, not a traceback
    with pytest.raises(SystemExit, match=r"1703.jpg: cannot read the file \(Permission denied\)"):
        eval_onnx._preprocess_or_exit(str(img), 224)
    unreadable(monkeypatch, d / "labels.csv")
    with pytest.raises(SystemExit, match=r"d/labels.csv: cannot read it \(Permission denied\)"):
        run(d, model)
    unreadable(monkeypatch, model)
    with pytest.raises(SystemExit, match=r"m.onnx: cannot read it \(Permission denied\)"):
        run(d, model)


def _bad_images():
    """(file name, how to write it from a real slice, the message): files `cbmir load` refuses."""
    from test_preprocess import png16, slice16

    def save(**kw):
        def w(path, im):
            im.save(path, **kw)
        return w

    def rgb(fmt):
        return lambda path, im: im.convert("RGB").save(path, fmt)

    def two_frames(path, im):
        im.save(path, "PNG", save_all=True, append_images=[Image.open(FIGSHARE / "images" / "20.jpg")])

    def cut(path, im):
        b = (FIGSHARE / "images" / "722.jpg").read_bytes()
        path.write_bytes(b[:len(b) // 2])  # a copy cut short

    def crc(path, im):
        b = bytearray((IXI / "images" / "IXI012_1.png").read_bytes())
        b[len(b) // 2] ^= 0xFF
        path.write_bytes(bytes(b))

    return [
        ("a.jpg", rgb("JPEG"), r"colour JPEG \(3 components\): expected grayscale"),
        ("a.png", rgb("PNG"), r"colour PNG \(colour type 2\): expected grayscale"),
        ("a16.png", lambda p, im: p.write_bytes(png16(np.stack([slice16()] * 3, -1), 2)),
         r"colour PNG \(colour type 2\): expected grayscale"),
        ("p.png", lambda p, im: im.convert("P").save(p), r"colour PNG \(colour type 3\): expected grayscale"),
        ("a.tif", save(format="TIFF"), r"unsupported image format \(a TIFF file\): eval:model reads grayscale PNG "
                                       r"and JPEG, as `cbmir load` does"),
        ("two.png", two_frames, r"2 frames \(a multi-frame PNG\): eval:model reads single-frame images"),
        ("cut.jpg", cut, r"truncated JPEG \(no EOI marker\)"),
        ("crc.png", crc, r"cannot decode as an image: broken PNG file"),
        ("x.dcm", lambda p, im: p.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64),
         r"cannot decode as an image \(a DICOM file"),
        ("notes.png", lambda p, im: p.write_text("not an image\n"),
         r"unsupported image format \(neither PNG nor JPEG data\)"),
        ("empty.jpg", lambda p, im: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    ]


@pytest.mark.parametrize("name,write,message", _bad_images(), ids=[c[0] for c in _bad_images()])
def test_an_image_cbmir_load_refuses_is_refused_before_embedding(tmp_path, model, no_embedding, name, write, message):
    # listed last: found before the embedding run, not at its end
    d = copy_sample(FIGSHARE, tmp_path / "d", extra=[[f"images/{name}", "3", "pituitary", "103670", "5"]])
    write(d / "images" / name, Image.open(FIGSHARE / "images" / "722.jpg"))
    with pytest.raises(SystemExit, match=rf"^{tmp_path}/d/images/{name}: {message}"):
        run(d, model, "--query-fold", "5")


def test_several_bad_images_are_listed_together(tmp_path, model, no_embedding):
    d = copy_sample(FIGSHARE, tmp_path / "d",
                    extra=[[f"images/{n}.png", "3", "pituitary", "103670", "5"] for n in "ab"])
    for n in "ab":
        Image.open(FIGSHARE / "images" / "722.jpg").convert("RGB").save(d / "images" / f"{n}.png")
    with pytest.raises(SystemExit,
                       match=r"2 image\(s\) named in labels.csv cannot be evaluated:\n  .*a.png: colour PNG"):
        run(d, model, "--query-fold", "5")


def test_grayscale_images_cbmir_load_takes_pass_the_check(tmp_path):
    from test_preprocess import png16, slice16

    g = slice16()
    (tmp_path / "ga16.png").write_bytes(png16(np.stack([g, g // 2], -1), 4))
    (tmp_path / "g16.png").write_bytes(png16(g[..., None], 0))
    Image.open(FIGSHARE / "images" / "722.jpg").convert("LA").save(tmp_path / "la.png")
    for f in ("ga16.png", "g16.png", "la.png"):
        assert eval_onnx.image_problem(str(tmp_path / f)) is None, f
    for f in ("images/722.jpg",):
        assert eval_onnx.image_problem(str(FIGSHARE / f)) is None
    assert eval_onnx.image_problem(str(IXI / "images" / "IXI012_1.png")) is None
