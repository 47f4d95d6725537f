"""Write golden vectors for the TypeScript port of preprocessing + embedding.

models/train/golden/
  <case>.<png|jpg>        the source image file (small real dataset images, or derived from one)
  <case>.pixels.bin       the decoded pixel array fed to preprocess() (dtype/shape in manifest;
                          use this to test preprocessing independently of your image decoder)
  <case>.input.bin        preprocess() output at the model's input size S, float32 little-endian [S,S] row-major
  <case>.input<S>.bin     the same at another input size S (OTHER_SIZES; one case)
  <case>.embedding.bin    ONNX `embedding` for that input, float32 LE [dims]
  manifest.json           cases, dtypes, shapes, stats, model file/version/sha256, tolerances

Regenerate after a model change: python3 models/train/golden.py
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

import data
from eval_onnx import input_side
from preprocess import load_image, preprocess

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
MODELS_DIR = HERE.parent


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def make_cases(root: Path):
    """(case name, source file to copy or None, pixel array, description, file to write or None)."""
    fig = root / "figshare-cheng" / "images" / "1.jpg"
    ixi = root / "ixi-normal" / "images" / "IXI002_1.png"
    cases = [
        ("figshare-1", fig, load_image(str(fig)), "figshare-cheng images/1.jpg (meningioma), 512x512 8-bit gray JPEG", None),
        ("ixi-IXI002", ixi, load_image(str(ixi)), "ixi-normal images/IXI002_1.png (normal), 197x233 8-bit gray PNG (non-square -> padding)", None),
    ]
    # 16-bit, non-square (wide), offset: derived from figshare image 1500 (glioma)
    g = load_image(str(root / "figshare-cheng" / "images" / "1500.jpg")).astype(np.uint16)
    g16 = (g[96:416, 16:496] * 173 + 900).astype(np.uint16)  # 320 x 480, values 900..45015
    cases.append(("figshare-1500-u16-wide", None, g16, "figshare-cheng images/1500.jpg cropped to 320x480 (HxW), x*173+900 as 16-bit PNG (16-bit, wide -> padding)", "png16"))
    # RGB: IXI013 with unequal channels to exercise the BT.601 luma
    x = load_image(str(root / "ixi-normal" / "images" / "IXI013_1.png")).astype(np.float64)
    rgb = np.stack([x, np.clip(x * 0.8 + 20, 0, 255), np.clip(255 - x, 0, 255) * 0.3], -1).round().astype(np.uint8)
    cases.append(("ixi-IXI013-rgb", None, rgb, "ixi-normal images/IXI013_1.png as RGB (R=x, G=0.8x+20, B=0.3(255-x)) 8-bit PNG", "rgb"))
    # Paths the cases above leave out, where a port could slip and still match them:
    # an odd padding (the extra row/column goes bottom/right), upsampling (support 1 below
    # the input size), and signed, fractional values (a rescaled CT: the quickselect path).
    ixi2 = load_image(str(ixi))
    cases.append(("ixi-IXI002-odd", None, np.ascontiguousarray(ixi2[:, :196]),
                  "ixi-normal images/IXI002_1.png cropped to 233x196 (HxW): odd padding, 8-bit PNG", "png8"))
    f1 = load_image(str(fig))
    cases.append(("figshare-1-small", None, np.ascontiguousarray(f1[192:320, 160:288]),
                  "figshare-cheng images/1.jpg cropped to 128x128: upsampled to the input size, 8-bit PNG", "png8"))
    ct = (f1[160:320, 144:336].astype(np.float32) * np.float32(7.3) - np.float32(1024.5)).astype(np.float32)
    cases.append(("figshare-1-signed-float", None, ct,
                  "figshare-cheng images/1.jpg cropped to 160x192, x*7.3-1024.5 as float32 (a rescaled, signed image; "
                  "no image file: what a DICOM decoder hands preprocessing)", "float"))
    return cases


# Cases also written at another input size: a model trained at another size (export.py
# writes it into the manifest) is fed the same preprocessing resized to that size, so
# the TypeScript port is checked there too; one case keeps the files small (0.4 MB).
OTHER_SIZES = {"figshare-1500-u16-wide": (320,)}


def main():
    import onnxruntime as ort

    man_model = json.loads((MODELS_DIR / "manifest.json").read_text())
    onnx_path = MODELS_DIR / man_model["file"]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    side = input_side(sess)
    readme = (GOLDEN / "README.md").read_text() if (GOLDEN / "README.md").exists() else None
    if GOLDEN.exists():
        shutil.rmtree(GOLDEN)
    GOLDEN.mkdir(parents=True)
    if readme:
        (GOLDEN / "README.md").write_text(readme)
    out = {"spec": "models/PREPROCESSING.md", "preprocessing_version": 1,
           "model": {"file": man_model["file"], "version": man_model["version"], "sha256": man_model["sha256"]},
           "tolerance": {"input_max_abs": 1e-3, "embedding_max_abs": 2e-3,
                         "note": "expected TS-vs-golden agreement; numpy float64 reference, float32 storage"},
           "layout": "all .bin files little-endian, row-major (C order)", "cases": []}
    for name, src, pix, desc, kind in make_cases(data.datasets_root()):
        if src is not None:
            img_file = GOLDEN / f"{name}{src.suffix}"
            shutil.copyfile(src, img_file)
        elif kind in ("png16", "png8"):
            img_file = GOLDEN / f"{name}.png"
            Image.fromarray(pix).save(img_file)  # mode I;16 or L
        elif kind == "float":
            img_file = None
        else:
            img_file = GOLDEN / f"{name}.png"
            Image.fromarray(pix, "RGB").save(img_file)
        if img_file is not None:
            dec = load_image(str(img_file))
            assert dec.shape == pix.shape and np.array_equal(dec, pix), f"{name}: decode mismatch"
        pixdt = {np.dtype(np.uint16): "<u2", np.dtype(np.float32): "<f4"}.get(pix.dtype, "u1")
        pix.astype(pixdt).tofile(GOLDEN / f"{name}.pixels.bin")
        x = preprocess(pix, out_size=side)  # the model's own input size (a 320 model is fed 320)
        x.astype("<f4").tofile(GOLDEN / f"{name}.input.bin")
        emb = sess.run(["embedding"], {"image": x[None, None]})[0][0]
        emb.astype("<f4").tofile(GOLDEN / f"{name}.embedding.bin")
        others = []
        for size in OTHER_SIZES.get(name, ()):
            xs = preprocess(pix, out_size=size)
            xs.astype("<f4").tofile(GOLDEN / f"{name}.input{size}.bin")
            others.append({"size": size, "file": f"{name}.input{size}.bin", "dtype": "float32", "shape": [size, size],
                           "sum": float(xs.astype(np.float64).sum())})
        out["cases"].append({
            "name": name, "description": desc, "image": img_file.name if img_file else None,
            "image_sha256": _sha(img_file) if img_file else None,
            "pixels": {"file": f"{name}.pixels.bin", "dtype": {"<u2": "uint16", "<f4": "float32"}.get(pixdt, "uint8"),
                       "shape": list(pix.shape)},
            "input": {"file": f"{name}.input.bin", "dtype": "float32", "shape": [side, side],
                      "mean": float(x.mean()), "sum": float(x.astype(np.float64).sum()),
                      "first8_row112": [float(v) for v in x[112, :8]], "center": float(x[112, 112])},
            "embedding": {"file": f"{name}.embedding.bin", "dtype": "float32", "shape": [int(emb.shape[0])],
                          "first4": [float(v) for v in emb[:4]]},
            **({"inputs_other_sizes": others} if others else {}),
        })
    (GOLDEN / "manifest.json").write_text(json.dumps(out, indent=2) + "\n")
    total = sum(p.stat().st_size for p in GOLDEN.iterdir())  # README included
    print(f"golden: {len(out['cases'])} cases, {total / 1e6:.2f} MB in {GOLDEN}")


if __name__ == "__main__":
    main()
