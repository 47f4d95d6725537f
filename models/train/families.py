"""Patient families (Figshare ids that differ only by a trailing letter; the dataset's folds.csv
`patient_family`) and the family-clean query set built on them.

Numpy and csv only: eval_onnx.py (which must run without torch) and evaluate.py share this
one definition, so `npm run eval:model`'s family figures and the training-side 3class_family
protocol cannot drift apart.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np


def read_families(dataset_dir: Path, text: str | None = None) -> dict[str, str]:
    """file -> patient_family from the folder's folds.csv (or `text`, its contents already read);
    {} without one (or without the column). Callers fall back to the patient id for a file it
    does not list."""
    p = Path(dataset_dir) / "folds.csv"
    if text is None:
        if not p.is_file():
            return {}
        text = p.read_text(encoding="utf-8-sig")
    return {r["file"].strip(): r["patient_family"].strip()
            for r in csv.DictReader(io.StringIO(text, newline=""))
            if (r.get("file") or "").strip() and (r.get("patient_family") or "").strip()}


def family_clean(q_families: np.ndarray, db_families: np.ndarray) -> np.ndarray:
    """Mask over the queries: True where the query's family has no item in the database.
    Queries are dropped rather than database items removed: the protocol asks how the model
    does on people it has never seen in any form, and the database stays the one it ships with."""
    seen = set(np.asarray(db_families).tolist())
    return np.array([f not in seen for f in np.asarray(q_families).tolist()], bool)
