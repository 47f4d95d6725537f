"""Tests for models/train. CPU only; the whole suite runs in well under 2 minutes."""
import sys
from pathlib import Path

import pytest

TRAIN_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TRAIN_DIR))

import torch  # noqa: E402

torch.set_num_threads(2)


def _datasets():
    from data import datasets_root
    return datasets_root()


def _weights():
    from googlenet import weights_dir
    return weights_dir()


needs_datasets = pytest.mark.skipif(not (_datasets() / "figshare-cheng" / "labels.csv").exists(),
                                    reason="datasets not available (set CBMIR_DATASETS)")
needs_weights = pytest.mark.skipif(not (_weights() / "manifest.csv").exists(),
                                   reason="BVLC weights not available (set CBMIR_WEIGHTS)")


@pytest.fixture(scope="session")
def datasets_root():
    return _datasets()


def mini_pack(dest, datasets_root, per=2, size=224):
    """A pack (pack.write_pack) of real slices: `per` per class in folds 1 and 5, size x size."""
    import numpy as np

    import data
    from pack import _jpeg, write_pack
    from preprocess import load_image, preprocess

    if not (_weights() / "manifest.csv").exists():
        pytest.skip("BVLC weights not available")
    rows = data.read_labels(datasets_root / "figshare-cheng")
    pick = [r for f in (1, 5) for c in (1, 2, 3) for r in [x for x in rows if x["fold"] == f and x["label"] == c][:per]]
    meta = {"labels": np.array([r["label"] for r in pick]), "patients": np.array([f"f:{r['patient_id']}" for r in pick]),
            "families": np.array([f"f:{r['patient_family']}" for r in pick]),
            "folds": np.array([r["fold"] for r in pick]), "sources": np.array([r["source"] for r in pick]),
            "files": np.array([r["file"] for r in pick])}
    dest.mkdir(exist_ok=True)
    rows_ = np.arange(len(pick))
    write_pack(dest, [_jpeg(preprocess(load_image(r["path"]), size), 90) for r in pick], rows_, rows_, meta)
