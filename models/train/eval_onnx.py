"""`npm run eval:model -- [--dataset DIR] [--model PATH]`: evaluate an ONNX model (no training).

DIR holds images + labels.csv (UTF-8; columns file,label,class_name and optional
patient_id,fold). Images are run through preprocess.py (the exact inference
preprocessing, as the TypeScript worker does) and the ONNX model with onnxruntime.
The images are those `cbmir load` takes: grayscale PNG (gray or gray+alpha, up to 16 bits)
and grayscale JPEG, single-frame; colour, other formats (TIFF, DICOM …), multi-frame files
and a JPEG without its EOI marker are refused before any embedding, as are a file listed
twice and a database of fewer than two classes.

Protocol:
  * with a `fold` column: query = rows of the held-out fold of the shipped model
    (manifest.json evaluation.query_fold, 5, also for its variants such as the INT8 file;
    override --query-fold), database = all other rows; `held_out` in the JSON says whether
    the queries are the model's held-out fold (false, with a warning, when --query-fold names
    a fold it was trained on; null for a model the manifest does not describe);
    a patient found in both (a bad fold column) never retrieves their own images: those are
    left out of that query's ranking, and `n_patients_in_both` counts such patients;
  * without `fold`: leave-one-patient-out (each image queries all images of the other
    patients) when `patient_id` is present, otherwise leave-one-out.
Relevant = same `label`. Euclidean distance on the embeddings. Figures are fractions
in [0,1]; 95% CIs by percentile bootstrap (metrics.py) over patients when `patient_id` is
present, over single images otherwise (`ci_method`); a figure over fewer than two such
clusters has no CI (null, printed "n/a (1 patient)").

Family-grouped figures (the stricter check): where a folder has a folds.csv with
`patient_family` (figshare-cheng: ids that differ only by a trailing letter), the fold
protocol is also scored on the family-clean queries only, those whose family has no image
in the database (evaluate.py's 3class_family, families.py), with family-cluster CIs.

Prints per-class and overall figures; the LAST stdout line is one JSON object:
  {"map":…, "p10":…, "p1":…, "p5":…, "n_queries":…, "per_class":{name:{…}}, "ci_method":…,
   "n_patients_in_both":…, "family":{"map":…, "p10":…, "p1":…, "n_queries":…, …} or null,
   "held_out": true/false/null, …}

Defaults: DIR = $CBMIR_DATASETS/figshare-cheng (CBMIR_DATASETS defaults to
<repo>/../shared/datasets); model = models/<manifest.json "file">.
--dataset may be repeated to pool several folders (e.g. figshare-cheng + ixi-normal).
Relative paths are taken from the folder `npm run eval:model` was run in (npm's INIT_CWD).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import metrics  # noqa: E402
from families import family_clean, read_families  # noqa: E402
from preprocess import preprocess_file  # noqa: E402

MODELS_DIR = HERE.parent
REPO_ROOT = MODELS_DIR.parent


def default_dataset() -> Path:
    root = os.environ.get("CBMIR_DATASETS")
    return (Path(root) if root else REPO_ROOT.parent / "shared" / "datasets") / "figshare-cheng"


def read_manifest() -> dict:
    p = MODELS_DIR / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {}


def model_entry(model: Path, man: dict) -> dict | None:
    """What the manifest says of this model file: {"file", "version", "query_fold"} where it is the
    shipped model or one of its variants (the INT8 file, derived from it: the same held-out fold),
    found by path, or by name and sha256 for a copy elsewhere; None for any other file."""
    if not man.get("file"):
        return None
    held = (man.get("evaluation") or {}).get("query_fold", 5)
    entries = [man] + [v for v in (man.get("variants") or {}).values() if isinstance(v, dict) and v.get("file")]
    for e in entries:
        f = MODELS_DIR / str(e["file"])
        same = model.resolve() == f.resolve() or (
            model.name == f.name and e.get("sha256") is not None and _sha256(model) == e["sha256"])
        if same:
            return {"file": e["file"], "version": e.get("version"),
                    "query_fold": (e.get("evaluation") or {}).get("query_fold", held)}
    return None


def read_csv_text(p: Path) -> str:
    """A CSV file's text, or SystemExit naming the file: it must be readable and UTF-8 (a leading BOM,
    as a spreadsheet writes it, is dropped: it would hide the first column's name)."""
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SystemExit(f"{p}: cannot read it ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
        line = raw[:bom + e.start].count(b"\n") + 1
        raise SystemExit(f"{p} is not UTF-8 text (byte 0x{raw[bom + e.start]:02x} on line {line}); save it as UTF-8 "
                         "(a spreadsheet's \"CSV UTF-8\")") from None


def read_dataset(d: Path) -> list[dict]:
    """labels.csv's rows, each checked, or SystemExit naming the file and line (never a traceback,
    and never after the embedding run has been paid for)."""
    if not d.is_dir():
        raise SystemExit(f"dataset folder not found: {d}")
    if not (d / "labels.csv").is_file():
        raise SystemExit(f"{d} has no labels.csv (columns file,label,class_name and optional patient_id,fold)")
    text = read_csv_text(d / "labels.csv")
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        # Column names as `cbmir load` reads them (workers/load/dataset.ts): trimmed, any case, so a
        # folder it loads is one this evaluates ("File,Label,Class_Name", "file, label, class_name").
        cols = [(c or "").strip().lower() for c in (reader.fieldnames or [])]
        dup = sorted({c for c in cols if c and cols.count(c) > 1})
        if dup:
            raise SystemExit(f"{d}/labels.csv names column(s) {', '.join(map(repr, dup))} twice (names are read "
                             "without case and surrounding spaces)")
        reader.fieldnames = cols
        for col in ("file", "label", "class_name"):
            if col not in cols:
                raise SystemExit(f"{d}/labels.csv lacks column {col!r}")
        rows = []
        for r in reader:
            if not any((v or "").strip() for k, v in r.items() if k is not None):
                continue  # a blank line
            rows.append((reader.line_num, r))
    if not rows:
        raise SystemExit(f"{d}/labels.csv has no rows")
    # Read with labels.csv's checks (UTF-8, readable), so that a bad folds.csv is a message, not a traceback.
    fams = read_families(d, read_csv_text(d / "folds.csv")) if (d / "folds.csv").is_file() else {}
    out = []
    for line, r in rows:
        where = f"{d}/labels.csv line {line}"
        for col in ("file", "label", "class_name"):
            if not (r.get(col) or "").strip():
                raise SystemExit(f"{where}: empty {col!r}")
        # A column present in the header is used for every row or for none: a blank cell would
        # otherwise switch the whole run to another protocol without a word.
        for col in ("fold", "patient_id"):
            if col in cols and not (r.get(col) or "").strip():
                raise SystemExit(f"{where}: empty {col!r} (the column is present, so every row needs one)")
        try:
            label = int(r["label"])
            fold = int(r["fold"]) if "fold" in cols else None
        except ValueError:
            raise SystemExit(f"{where}: label and fold must be integers "
                             f"(got label={r['label']!r}, fold={r.get('fold')!r})") from None
        out.append({
            "path": str(d / r["file"].strip()), "label": label, "class_name": r["class_name"].strip(),
            "patient_id": f"{d.name}:{r['patient_id'].strip()}" if "patient_id" in cols else None,
            "fold": fold, "where": where,
            "family": f"{d.name}:{fams[r['file'].strip()]}" if r["file"].strip() in fams else None,
        })
    return out


def check_rows(rows: list[dict]) -> dict:
    """Checks across all pooled rows, before any embedding: one class name per label, every image
    present, no image listed twice. Returns label -> class name."""
    seen, dups = {}, []
    for r in rows:
        # Resolved, so that a folder given twice (--dataset d --dataset ./d) or a file reached by two
        # spellings or a link counts once: a duplicate would be its own nearest neighbour and inflate P@k.
        key = os.path.realpath(r["path"])
        if key in seen:
            dups.append((seen[key], r))
        else:
            seen[key] = r
    if dups:
        a, b = dups[0]
        labels = "" if a["label"] == b["label"] else (f"; labelled {a['label']} ({a['class_name']!r}) there and "
                                                      f"{b['label']} ({b['class_name']!r}) here")
        more = f" (and {len(dups) - 1} more duplicate row(s))" if len(dups) > 1 else ""
        raise SystemExit(f"{b['where']}: duplicate file row (the same image as {a['where']}): {b['path']}{labels}; "
                         f"list each image once{more}")
    names, first = {}, {}
    for r in rows:
        n = names.setdefault(r["label"], r["class_name"])
        first.setdefault(r["label"], r["where"])
        if n != r["class_name"]:
            raise SystemExit(f"{r['where']}: label {r['label']} is named {r['class_name']!r}, but "
                             f"{n!r} at {first[r['label']]}; a label needs one class name")
    by_name = {}
    for lab, n in names.items():
        if n in by_name:
            raise SystemExit(f"labels {by_name[n]} and {lab} are both named {n!r}; per-class figures are "
                             f"keyed by name, so each label needs its own")
        by_name[n] = lab
    missing = [r["path"] for r in rows if not os.path.isfile(r["path"])]
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  … and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise SystemExit(f"{len(missing)} image(s) named in labels.csv not found:\n  {shown}{more}")
    return names


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DICOM_HINT = ("a DICOM file: eval:model reads grayscale PNG/JPEG exports, as `cbmir load` does; the gateway's worker "
              "reads DICOM, see `npm run eval:live`")


def jpeg_has_eoi(b: bytes) -> bool:
    """Whether JPEG data reaches an EOI marker after its scans, as core/dicom/source-image.ts's
    hasJpegEoi decides it: segments skipped by their length, entropy-coded data up to the next
    marker (FF followed by neither 00, a fill FF nor RSTn)."""
    i, n = 2, len(b)
    while i < n:
        j = b.find(b"\xff", i)
        if j < 0:
            return False
        k = j + 1
        while k < n and b[k] == 0xFF:  # fill bytes
            k += 1
        if k >= n:
            return False
        m = b[k]
        if m == 0xD9:
            return True
        if m in (0x00, 0x01, 0xD8) or 0xD0 <= m <= 0xD7:
            i = k + 1
            continue
        if k + 2 >= n:
            return False
        i = k + 1 + ((b[k + 1] << 8) | b[k + 2])
    return False


def image_problem(path: str) -> str | None:
    """Why this file cannot be evaluated, None when it can: it is read, and judged as `cbmir load`
    judges a dataset image (core/dicom/source-image.ts: JPEG or PNG by content, grayscale, a JPEG
    with its EOI marker), on its header only. Multi-frame files are refused too, where cbmir load
    would silently take the first frame. A decode error in the pixel data shows only when embedding."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            b = f.read()
    except OSError as e:
        return f"cannot read the file ({e.strerror or e})"
    is_jpeg, is_png = b[:3] == b"\xff\xd8\xff", b[:8] == PNG_SIGNATURE
    if not (is_jpeg or is_png):
        if not b:
            return "empty file (0 bytes)"
        if b[128:132] == b"DICM":
            return f"cannot decode as an image ({DICOM_HINT})"
        try:
            with Image.open(io.BytesIO(b)) as im:
                fmt = f"a {im.format} file"
        except Exception:
            fmt = "neither PNG nor JPEG data"
        return f"unsupported image format ({fmt}): eval:model reads grayscale PNG and JPEG, as `cbmir load` does"
    try:
        with Image.open(io.BytesIO(b)) as im:
            frames, layers = getattr(im, "n_frames", 1), getattr(im, "layers", None)
            if is_png:
                im.verify()  # every chunk present, with its checksum
    except Exception as e:  # PIL raises several types for one cause
        return f"cannot decode as an image: {e}"
    if is_jpeg:
        if not jpeg_has_eoi(b):
            return "truncated JPEG (no EOI marker)"
        if layers != 1:
            return f"colour JPEG ({layers} components): expected grayscale"
    elif b[25] not in (0, 4):  # IHDR colour type: 0 gray, 4 gray+alpha; 2/6 RGB(A), 3 palette
        return f"colour PNG (colour type {b[25]}): expected grayscale"
    if frames > 1:
        return (f"{frames} frames (a multi-frame {'JPEG' if is_jpeg else 'PNG'}): eval:model reads single-frame "
                "images; save each frame as a file of its own")
    return None


def check_images(rows: list[dict]) -> None:
    """SystemExit naming every listed image that cannot be evaluated (image_problem), before any
    embedding: a bad file near the end must not cost the whole run."""
    bad = [(r["path"], why) for r in rows if (why := image_problem(r["path"]))]
    if len(bad) == 1:
        raise SystemExit(f"{bad[0][0]}: {bad[0][1]}")
    if bad:
        shown = "\n  ".join(f"{p}: {why}" for p, why in bad[:10])
        more = f"\n  … and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise SystemExit(f"{len(bad)} image(s) named in labels.csv cannot be evaluated:\n  {shown}{more}")


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def embed_cached(model_path: Path, paths: list[str], batch: int = 32, threads: int = 2, log=print,
                 use_cache: bool = True) -> np.ndarray:
    """embed() with a per-model on-disk cache (models/train/.data/, git-ignored), keyed by the
    model's sha256 and each image's absolute path, size and mtime."""
    if not use_cache:
        return embed(model_path, paths, batch, threads, log)
    # The preprocessing code is part of the key: a change to it must not reuse old embeddings.
    prep = _sha256(HERE / "preprocess.py")[:8]
    cache_file = HERE / ".data" / f"onnx-emb-{_sha256(model_path)[:16]}-{prep}.npz"
    keys = []
    for p in paths:
        st = os.stat(p)
        keys.append(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}")
    known = {}
    if cache_file.exists():
        z = np.load(cache_file)
        known = dict(zip(z["keys"].tolist(), z["emb"]))
    todo = [i for i, k in enumerate(keys) if k not in known]
    if todo:
        new = embed(model_path, [paths[i] for i in todo], batch, threads, log)
        for i, e in zip(todo, new):
            known[keys[i]] = e
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")  # per process: two evaluations at once must not share one
        np.savez(tmp, keys=np.array(list(known.keys())), emb=np.stack(list(known.values())))
        os.replace(tmp, cache_file)
    else:
        log(f"all {len(paths)} embeddings from cache {cache_file.name}")
    return np.stack([known[k] for k in keys])


def input_side(sess) -> int:
    """The square input side the model declares ([N,1,S,S]; the runtime reads the same
    from the manifest), 224 where the graph leaves it open."""
    shape = sess.get_inputs()[0].shape
    h, w = (shape[-2], shape[-1]) if len(shape) == 4 else (None, None)
    if isinstance(h, int) and isinstance(w, int):
        if h != w:
            raise ValueError(f"model input {shape}: expected a square image")
        return h
    return 224


def open_session(model_path: Path, threads: int):
    """An onnxruntime session of an embedding model (input `image` [N,1,S,S], output `embedding`,
    as models/runtime/embedder.ts feeds it) and its input side, or SystemExit naming what the file is not."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime has an exception type per cause (InvalidProtobuf, NoSuchFile, Fail …)
        raise SystemExit(f"{model_path}: onnxruntime cannot load it as an ONNX model: {e}") from None
    ins = {i.name: i.shape for i in sess.get_inputs()}
    outs = [o.name for o in sess.get_outputs()]
    img = ins.get("image")
    # A dimension the graph leaves open is a name or None: only a fixed channel count other than 1 is wrong.
    one_channel = img is not None and len(img) == 4 and (img[1] == 1 or not isinstance(img[1], int))
    if len(ins) != 1 or not one_channel or "embedding" not in outs:
        shown = ", ".join(f"{k} {v}" for k, v in ins.items())
        raise SystemExit(f"{model_path}: not an embedding model: eval:model needs one input 'image' [N,1,S,S] and an "
                         f"output 'embedding'; this graph has inputs {shown} and outputs {', '.join(outs)}")
    try:
        side = input_side(sess)
    except ValueError as e:
        raise SystemExit(f"{model_path}: {e}") from None
    return sess, side


def _preprocess_or_exit(path: str, out_size: int) -> np.ndarray:
    try:
        return preprocess_file(path, out_size)
    except OSError as e:
        if e.errno is not None:  # the file system's refusal (permissions, gone); PIL's own errors carry none
            raise SystemExit(f"{path}: cannot read the file ({e.strerror or e})") from None
        err = e
    except Exception as e:  # PIL raises several types for one cause: the file is not an image it reads
        err = e
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        head = b""
    hint = f" ({DICOM_HINT})" if head[128:132] == b"DICM" else ""
    raise SystemExit(f"{path}: cannot decode as an image{hint}: {err}") from None


def embed(model_path: Path, paths: list[str], batch: int = 32, threads: int = 2, log=print) -> np.ndarray:
    sess, side = open_session(model_path, threads)
    prep = partial(_preprocess_or_exit, out_size=side)
    out = []
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i in range(0, len(paths), batch):
            x = np.stack(list(pool.map(prep, paths[i:i + batch])))[:, None]
            out.append(sess.run(["embedding"], {"image": x})[0])
            done = i + len(x)
            if (i // batch) % 10 == 0 or done == len(paths):
                log(f"embedded {done}/{len(paths)} ({time.time() - t0:.0f}s)")
    return np.concatenate(out)


def positive_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def check_save_path(p: str) -> None:
    """SystemExit unless --save-embeddings can be written: checked before the embedding run, which
    a missing folder would otherwise throw away at its very end."""
    target = Path(p if p.endswith(".npy") else p + ".npy")  # np.save adds .npy
    parent = target.parent
    if target.is_dir():
        raise SystemExit(f"--save-embeddings {p}: is a folder; give a file name (.npy)")
    if not parent.is_dir():
        raise SystemExit(f"--save-embeddings {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise SystemExit(f"--save-embeddings {p}: cannot write there (permissions)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", help="dataset folder (repeatable)")
    ap.add_argument("--model", help="ONNX file (default: the shipped model from models/manifest.json)")
    ap.add_argument("--query-fold", type=int, help="held-out fold used as queries (default: manifest, 5)")
    ap.add_argument("--batch", type=positive_int, default=32, help="images per inference call (default 32)")
    ap.add_argument("--threads", type=positive_int, default=2, help="onnxruntime and decoding threads (default 2)")
    ap.add_argument("--n-boot", type=positive_int, default=1000,
                    help="bootstrap resamples for the 95%% CIs (default 1000)")
    ap.add_argument("--save-embeddings", help="write the embeddings (.npy)")
    ap.add_argument("--no-cache", action="store_true", help="do not read/write the embedding cache")
    a = ap.parse_args(argv)
    if a.save_embeddings:
        check_save_path(a.save_embeddings)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    man = read_manifest()
    if a.model:
        model = Path(a.model)
    else:
        if not man.get("file"):
            raise SystemExit("no --model and no models/manifest.json with a 'file'")
        model = MODELS_DIR / man["file"]
    if not model.exists():
        raise SystemExit(f"model not found: {model}")
    if not model.is_file():
        raise SystemExit(f"--model {model}: is not a file (give an .onnx file)")
    try:
        with open(model, "rb") as f:
            f.read(1)
    except OSError as e:
        raise SystemExit(f"--model {model}: cannot read it ({e.strerror or e})") from None
    dirs = [Path(d) for d in (a.dataset or [str(default_dataset())])]
    per_dir = [(d, read_dataset(d)) for d in dirs]
    # Within a folder a column is used by every row or none (read_dataset); across pooled folders
    # too, so that one protocol covers every row.
    kinds = {(d, rs[0]["fold"] is not None, rs[0]["patient_id"] is not None) for d, rs in per_dir}
    if len({k[1:] for k in kinds}) > 1:
        shown = "; ".join(f"{d}: fold {'yes' if f else 'no'}, patient_id {'yes' if p else 'no'}" for d, f, p in kinds)
        raise SystemExit(f"the --dataset folders differ in their fold/patient_id columns ({shown}); "
                         "pool folders of one kind")
    rows = [r for _, rs in per_dir for r in rs]
    names = check_rows(rows)
    labels = np.array([r["label"] for r in rows])
    patients = np.array([r["patient_id"] or f"row{i}" for i, r in enumerate(rows)])
    has_fold = rows[0]["fold"] is not None
    has_pid = rows[0]["patient_id"] is not None
    if a.query_fold is not None and not has_fold:
        raise SystemExit("--query-fold needs a fold column in labels.csv")
    entry = model_entry(model, man)
    if a.query_fold is not None:
        qf = a.query_fold
    elif entry:
        qf = entry["query_fold"]
        if qf is None and has_fold:
            raise SystemExit(f"{model.name} was trained on every fold (its manifest names no held-out fold), so "
                             "no fold is honest to query; pass --query-fold knowing that")
    else:
        qf = 5
        if has_fold:
            log("note: --model is not the shipped model, so its held-out fold is unknown here; querying fold 5 "
                "(the published protocol). Pass --query-fold with the fold it was trained without")
    if has_fold and not any(r["fold"] == qf for r in rows):
        # The contract: with a fold column the held-out fold is the query set. Falling back to
        # leave-one-patient-out here would report another protocol under the same command.
        raise SystemExit(f"no row of fold {qf} in the dataset's fold column (folds: "
                         f"{sorted({r['fold'] for r in rows})}); pass --query-fold")
    if has_fold and all(r["fold"] == qf for r in rows):
        raise SystemExit(f"every row is in fold {qf}, so the database would be empty; pass --query-fold")
    if not has_fold and len(set(patients.tolist())) < 2:
        raise SystemExit("leave-one-out needs at least two images (two patients with patient_id)")
    # With one class in the database every image retrieved is relevant (or, for a query of another
    # class, none is): the figures would say nothing of the ranking, whatever the model.
    db_labels = sorted({r["label"] for r in rows if not has_fold or r["fold"] != qf})
    if len(db_labels) < 2:
        where = f"the database (the rows outside fold {qf})" if has_fold else "the dataset"
        raise SystemExit(f"retrieval by class needs at least two classes, but {where} holds one only: "
                         f"{names[db_labels[0]]!r} (label {db_labels[0]}); add images of another class")
    # Whether the queries are images the model was trained without: the manifest's held-out fold.
    held_out = None
    if has_fold and entry:
        held_out = entry["query_fold"] is not None and qf == entry["query_fold"]
        if not held_out:
            trained = (f"its held-out fold is {entry['query_fold']}" if entry["query_fold"] is not None
                       else "it was trained on every fold")
            log(f"WARNING: fold {qf} is not the held-out fold of {model.name} ({trained}): these queries were in its "
                "training set, so the figures overstate it on unseen patients (held_out: false in the JSON)")
    check_images(rows)  # last: it reads every file

    log(f"model {model.name}; {len(rows)} images from {', '.join(str(d) for d in dirs)}")
    emb = embed_cached(model, [r["path"] for r in rows], a.batch, a.threads, log, use_cache=not a.no_cache)
    if a.save_embeddings:
        np.save(a.save_embeddings, emb)

    folds = np.array([r["fold"] if r["fold"] is not None else -1 for r in rows])
    # Without patient ids every image is its own cluster, so the bootstrap is per image.
    ci_method = "patient-cluster bootstrap" if has_pid else "per-image bootstrap"
    n_in_both, fam_res, family = None, None, None
    if has_fold and (folds == qf).any():
        q, db = np.flatnonzero(folds == qf), np.flatnonzero(folds != qf)
        protocol = f"fold {qf} queries vs other folds database"
        # A fold column that puts one patient on both sides would let a query retrieve slices of its
        # own scan, which says nothing about unseen patients: those items are not ranked at all.
        exclude = patients[q][:, None] == patients[db][None, :]
        if has_pid:
            n_in_both = len(set(patients[q]) & set(patients[db]))
        if n_in_both:
            log(f"WARNING: {n_in_both} patient(s) appear in both the query fold and the database; each such query's "
                "own patient's images are left out of its ranking (n_patients_in_both in the JSON)")
        res = metrics.evaluate_split(emb[q], labels[q], emb[db], labels[db], names, patients[q], exclude, a.n_boot)
        n_db = int(len(db))
        if any(r["family"] is not None for r in rows):
            # A row that folds.csv does not list is its own patient's family, as in data.read_labels.
            fams = np.array([r["family"] or patients[i] for i, r in enumerate(rows)])
            fam_res, family = family_block(emb, labels, names, fams, q, db, a.n_boot)
    else:
        exclude = patients[:, None] == patients[None, :]  # self (LOO) or same patient (LOPO)
        protocol = "leave-one-patient-out" if has_pid else "leave-one-out"
        pq = metrics.rank_metrics(metrics.pairwise_sqdist(emb, emb), labels, labels, exclude)
        res = metrics.summarise(pq, labels, names, patients, a.n_boot)
        # Each query's database is every other patient's images (LOPO) or every other image (LOO).
        n_db = int(round(float((~exclude).sum(axis=1).mean())))
    if res["n_map_queries"] < res["n_queries"]:
        log(f"note: {res['n_queries'] - res['n_map_queries']} of {res['n_queries']} queries have no image of their "
            "class in their database; they count in P@k (as misses) but not in mAP (undefined there)")
    if n_db < 10:
        log(f"note: the database holds {n_db} images, fewer than 10; P@10 still divides by 10")
    print(metrics.format_table(res, f"{model.name} — {protocol} (figures in %, 95% CI: {ci_method})",
                               unit="patient" if has_pid else "image"))
    if fam_res is not None:
        print(metrics.format_table(
            fam_res, f"{model.name} — family-clean: the {family['n_queries']} of {len(q)} fold {qf} queries whose "
            f"patient family has no image in the database (figures in %, 95% CI: {family['ci_method']})",
            unit="family"))
    elif family is not None:
        log(f"note: every fold {qf} query's patient family has an image in the database: no family-clean figures")
    out = {
        **block_json(res, n_db),
        "ci_method": ci_method, "n_patients_in_both": n_in_both, "family": family,
        "protocol": protocol, "held_out": held_out, "units": "fraction",
        "model": {"file": model.name, "version": entry["version"] if entry else None},
        "dataset": [str(d) for d in dirs],
    }
    # A class with no relevant item for any query (one image, or one patient under LOPO) has a
    # NaN mAP: JSON has no NaN, so it is null, and the last line stays parseable.
    print(json.dumps(_nan_to_none(out), allow_nan=False))
    return 0


FIGURES = ("map", "p10", "p1", "p5")


def block_json(res: dict, n_database: int) -> dict:
    """summarise()'s figures with every CI it computed, overall and per class."""
    def one(b):
        return {**{k: b[k] for k in FIGURES}, "n_queries": b["n_queries"], "n_map_queries": b["n_map_queries"]}

    def cis(b):
        return {f"{k}_ci95": b[f"{k}_ci95"] for k in FIGURES}
    return {**one(res), "n_database": n_database,
            "per_class": {k: {**one(v), **cis(v)} for k, v in res["per_class"].items()}, **cis(res)}


def family_block(emb, labels, names, fams, q, db, n_boot) -> tuple[dict | None, dict]:
    """The fold protocol on its family-clean queries (families.family_clean, as evaluate.py's
    3class_family): (summarise() result or None when no query is left, its JSON block)."""
    keep = family_clean(fams[q], fams[db])
    qc = q[keep]
    head = {"definition": "fold queries whose patient_family has no image in the database; database unchanged",
            "ci_method": "family-cluster bootstrap", "n_queries_dropped": int((~keep).sum())}
    if len(qc) == 0:
        return None, {"n_queries": 0, "n_database": int(len(db)), **head}
    # Families, not patients, are the clusters: two ids of one family are probably one person.
    res = metrics.evaluate_split(emb[qc], labels[qc], emb[db], labels[db], names, fams[qc], n_boot=n_boot)
    return res, {**block_json(res, int(len(db))), **head}


def _nan_to_none(x):
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


if __name__ == "__main__":
    sys.exit(main())
