"""Split hygiene: no patient (and, for the stricter protocol, no patient family) on both sides."""
import numpy as np
import pytest

import data
from conftest import needs_datasets

pytestmark = needs_datasets


@pytest.fixture(scope="module")
def meta():
    from evaluate import cache_meta
    return cache_meta()


def test_counts(meta):
    assert len(meta["labels"]) == 3064 + 581
    assert np.bincount(meta["labels"]).tolist() == [581, 708, 1426, 930]


@pytest.mark.parametrize("test_fold", [1, 2, 3, 4, 5])
def test_no_patient_in_train_and_test(meta, test_fold):
    tr, te = data.split_folds(meta["folds"], test_fold)
    assert len(tr) and len(te) and len(tr) + len(te) == len(meta["folds"])
    assert not data.check_patient_disjoint(meta["patients"][tr], meta["patients"][te])


def test_datasets_do_not_share_patients(meta):
    fig = meta["sources"] == data.FIGSHARE
    raw = lambda s: {p.split(":", 1)[1] for p in s}  # noqa: E731
    assert not raw(meta["patients"][fig]) & raw(meta["patients"][~fig])


def test_published_folds_are_not_family_clean_but_family_protocol_is(meta):
    from evaluate import protocols

    fig = meta["sources"] == data.FIGSHARE
    fam_folds = {}
    for f, k in zip(meta["families"][fig], meta["folds"][fig]):
        fam_folds.setdefault(f, set()).add(k)
    assert sum(len(v) > 1 for v in fam_folds.values()) == 16  # as the dataset README says
    p = protocols(meta, 5)
    q, db = p["3class_family"]
    assert len(q) > 0
    assert not set(meta["families"][q]) & set(meta["families"][db])
    q3, _ = p["3class"]
    assert set(q) <= set(q3) and len(q) < len(q3)


def test_train_rows_exclude_test_fold(meta):
    tr, te = data.split_folds(meta["folds"], 5)
    assert (meta["folds"][tr] != 5).all() and (meta["folds"][te] == 5).all()
