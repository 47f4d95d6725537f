"""INT8 (static, calibrated on real images) vs FP32 — speed and agreement, NOT the mAP check.

    python3 bench/int8/quantize.py [--calib 128] [--probe 200] [--out .cache/int8/model-int8.onnx]

1. Calibrates on --calib images of figshare-cheng folds 1-4 (never the query fold 5), preprocessed
   exactly as the worker does (models/train/preprocess.py), and writes a QDQ model: weights
   int8 per channel, activations uint8 (the x86 VNNI layout onnxruntime runs fastest).
   --ops picks the op types (default Conv: the backbone's convolutions, where the FLOPs are;
   quantizing everything, GeM pooling and the head included, moved embeddings far — measured).
2. On --probe images of fold 5: inference time per image with one thread (batch 16) for both
   models, and how far the INT8 embeddings move from FP32 (L2 distance of the unit vectors)
   plus the overlap of their top-10 neighbour lists within the probe set.
The issue's acceptance test for INT8 is mAP within 0.2 points of FP32 (models/train/eval_onnx.py
--model <int8 file>): this script does not replace it. Prints one JSON line last.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "train"))
from eval_onnx import input_side  # noqa: E402
from preprocess import preprocess_file  # noqa: E402


def rows(dataset: Path) -> list[dict[str, str]]:
    with open(dataset / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def batch_of(dataset: Path, rs: list[dict[str, str]], size: int = 224) -> np.ndarray:
    return np.stack([preprocess_file(str(dataset / r["file"]), size) for r in rs]).astype(np.float32)[:, None, :, :]


class Reader(CalibrationDataReader):
    def __init__(self, data: np.ndarray, name: str, batch: int = 16):
        self.items = [{name: data[i : i + batch]} for i in range(0, len(data), batch)]

    def get_next(self):
        return self.items.pop(0) if self.items else None


def session(path: Path) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def embed(s: ort.InferenceSession, data: np.ndarray) -> tuple[np.ndarray, float]:
    name = s.get_inputs()[0].name
    s.run(["embedding"], {name: data[:16]})  # warm-up
    t0 = time.process_time()
    out = [s.run(["embedding"], {name: data[i : i + 16]})[0] for i in range(0, len(data), 16)]
    return np.concatenate(out), (time.process_time() - t0) * 1000 / len(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(ROOT.parent / "shared" / "datasets" / "figshare-cheng"))
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--probe", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / ".cache" / "int8" / "model-int8.onnx"))
    ap.add_argument("--ops", default="Conv", help="op types to quantize (comma-separated; 'all' = every supported op)")
    ap.add_argument("--exclude", default="",
                    help="keep these nodes FP32: comma-separated substrings of node names (e.g. 'conv1,inception_5b')")
    ap.add_argument("--ship", action="store_true",
                    help="write the INT8 file to models/<name>-<version>-int8.onnx and record it in models/manifest.json "
                         "under variants.int8 (run models/train/eval_onnx.py --model on it for the mAP check first)")
    ap.add_argument("--method", default="MinMax", choices=["MinMax", "Entropy", "Percentile"],
                    help="activation calibration (onnxruntime CalibrationMethod)")
    a = ap.parse_args()
    dataset = Path(a.dataset)
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    fp32 = ROOT / "models" / manifest["file"]
    side = input_side(session(fp32))  # the size the model declares (224 for the shipped one)
    rs = rows(dataset)
    rng = np.random.default_rng(7)
    train = [r for r in rs if r.get("fold") and int(r["fold"]) != 5]
    test = [r for r in rs if r.get("fold") and int(r["fold"]) == 5]
    calib = [train[i] for i in rng.choice(len(train), a.calib, replace=False)]
    probe = [test[i] for i in rng.choice(len(test), min(a.probe, len(test)), replace=False)]

    out = ROOT / "models" / f"{manifest['name']}-{manifest['version']}-int8.onnx" if a.ship else Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    import onnx

    names = [n.name for n in onnx.load(str(fp32)).graph.node]
    pats = [p for p in a.exclude.split(",") if p]
    excluded = [n for n in names if any(p in n for p in pats)]
    if pats and not excluded:
        raise SystemExit(f"--exclude {a.exclude!r} matches no node (names look like {names[:3]})")
    quantize_static(
        str(fp32), str(out), Reader(batch_of(dataset, calib, side), "image"),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        calibrate_method=getattr(CalibrationMethod, a.method), nodes_to_exclude=excluded,
        extra_options={"CalibPercentile": 99.99} if a.method == "Percentile" else {},
        **({} if a.ops == "all" else {"op_types_to_quantize": a.ops.split(",")}),
    )
    print(f"quantized in {time.time() - t0:.0f} s → {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)

    data = batch_of(dataset, probe, side)
    e32, ms32 = embed(session(fp32), data)
    e8, ms8 = embed(session(out), data)
    drift = np.linalg.norm(e32 - e8, axis=1)

    def top10(e: np.ndarray) -> np.ndarray:
        d = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return np.argsort(d, axis=1)[:, :10]

    t32, t8 = top10(e32), top10(e8)
    overlap = float(np.mean([len(set(t32[i]) & set(t8[i])) / 10 for i in range(len(probe))]))
    labels = np.array([r["label"] for r in probe])
    p10 = lambda t: float(np.mean([(labels[t[i]] == labels[i]).mean() for i in range(len(probe))]))  # noqa: E731
    if a.ship:
        import hashlib

        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        (out.parent / (out.name + ".sha256")).write_text(f"{digest}  {out.name}\n")
        manifest.setdefault("variants", {})["int8"] = {
            "file": out.name, "version": f"{manifest['version']}-int8", "sha256": digest, "bytes": out.stat().st_size,
            "quantization": {"tool": "onnxruntime quantize_static", "format": "QDQ", "weights": "int8 per channel",
                             "activations": "uint8", "ops": a.ops, "excluded": pats, "calibration": a.method,
                             "calib_images": a.calib, "calib_source": "figshare-cheng folds 1-4 (seed 7)"},
            "use": "CBMIR_MODEL=models/" + out.name + " (vectors carry version " + manifest["version"] + "-int8)",
        }
        (ROOT / "models" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({
        "model": manifest["version"], "quantized_ops": a.ops, "excluded_nodes": len(excluded), "calibration": a.method, "calib_images": a.calib, "probe_images": len(probe),
        "fp32_cpu_ms_per_image_1thread": round(ms32, 1), "int8_cpu_ms_per_image_1thread": round(ms8, 1),
        "speedup": round(ms32 / ms8, 2),
        "embedding_l2_drift_mean": round(float(drift.mean()), 4), "embedding_l2_drift_max": round(float(drift.max()), 4),
        "top10_overlap_within_probe": round(overlap, 3),
        "p10_within_probe_fp32": round(p10(t32), 3), "p10_within_probe_int8": round(p10(t8), 3),
        "int8_file": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
    }))


if __name__ == "__main__":
    main()
