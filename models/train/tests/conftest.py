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
