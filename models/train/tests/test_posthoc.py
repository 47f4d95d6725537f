"""Post-hoc re-ranking maths on hand-checkable vectors, and the command on a real mini pack."""
import json
import warnings

import numpy as np
import pytest
import torch

from conftest import mini_pack, needs_datasets

from posthoc import (aqe, centre_pull, class_centres, dba, diagnose, diffusion, ensemble, normalise, pca_whiten,
                     within_class_whiten)


def test_aqe_pulls_the_query_towards_its_nearest_database_vector():
    D = normalise(np.array([[1.0, 0.0], [0.0, 1.0]]))
    Q = normalise(np.array([[0.8, 0.6]]))
    got = aqe(Q, D, n=1, alpha=1.0)
    # q + 0.8 * d0, normalised
    want = normalise(np.array([[0.8 + 0.8, 0.6]]))
    assert np.allclose(got, want)
    assert got[0] @ D[0] > Q[0] @ D[0]


def test_aqe_ignores_negatively_similar_neighbours():
    D = np.array([[-1.0, 0.0]])
    Q = np.array([[1.0, 0.0]])
    assert np.allclose(aqe(Q, D, n=1), Q)


def test_dba_with_one_neighbour_is_the_identity():
    D = normalise(np.array([[1.0, 0.2], [0.3, 1.0], [1.0, 1.0]]))
    assert np.allclose(dba(D, n=1), D)


def test_diffusion_scores_items_by_their_similarity_to_the_querys_neighbourhood():
    D = normalise(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    Q = normalise(np.array([[1.0, 0.05]]))
    S = diffusion(Q, D, k=1, alpha=1.0)
    # k = 1: the nearest item is D[0], so the scores are D[0]'s similarities
    assert np.allclose(S[0], D @ D[0])


def test_ensemble_cosine_is_the_mean_of_the_parts_cosines():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(5, 3))
    e = ensemble([a, b])
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0)
    na, nb = normalise(a), normalise(b)
    assert np.allclose(e @ e.T, (na @ na.T + nb @ nb.T) / 2)


def test_pca_whitening_without_shrinkage_makes_the_database_covariance_the_identity():
    rng = np.random.default_rng(1)
    D = rng.normal(size=(500, 4)) * np.array([5.0, 2.0, 1.0, 0.1])
    mu = D.mean(0)
    w, V = np.linalg.eigh(np.cov((D - mu).T))
    f = pca_whiten(D, power=0.5, shrink=0.0)
    # f normalises; undo that by comparing directions with the explicit whitening
    Z = (D - mu) @ V @ np.diag(w ** -0.5) @ V.T
    assert np.allclose(np.cov(Z.T), np.eye(4), atol=1e-8)
    assert np.allclose(f(D), normalise(Z))


def test_within_class_whitening_stretches_the_direction_that_separates_classes():
    # classes differ along x by 1; within each class the spread is along y (by 2)
    D = np.array([[0.0, -1.0], [0.0, 1.0], [0.1, 0.0], [1.0, -1.0], [1.0, 1.0], [0.9, 0.0]])
    y = np.array([0, 0, 0, 1, 1, 1])

    def nearest_other(X):
        S = X @ X.T
        np.fill_diagonal(S, -np.inf)
        return S.argmax(1)

    raw = normalise(D - D.mean(0))
    assert (y[nearest_other(raw)] != y).any()  # before: some neighbours cross the class border
    W = within_class_whiten(D, y, shrink=0.0)(D)
    assert np.allclose(np.linalg.norm(W, axis=1), 1.0)
    assert (y[nearest_other(W)] == y).all()


def test_centre_pull_is_the_identity_at_zero_and_moves_towards_the_assigned_centre():
    W = normalise(np.array([[1.0, 0.0], [0.0, 1.0]]))
    X = normalise(np.array([[0.9, 0.3]]))
    assert np.allclose(centre_pull(X, W, 0.0), X)
    pulled = centre_pull(X, W, 1.0)
    assert pulled[0] @ W[0] > X[0] @ W[0]


def test_class_centres_are_the_normalised_class_means():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 4.0]])
    W = class_centres(emb, np.array([0, 0, 1, 1]), 2)
    assert np.allclose(W, normalise(np.array([[0.5, 0.5], [0.0, 3.0]])))


def test_a_class_missing_from_the_fold_has_no_centre_and_pulls_nothing():
    emb = normalise(np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice"
        W = class_centres(emb, np.array([0, 0, 2]), 3)
        assert np.isnan(W[1]).all() and np.isfinite(W[[0, 2]]).all()
        X = normalise(np.array([[0.9, 0.3]]))
        assert np.allclose(centre_pull(X, W, 1.0), centre_pull(X, W[[0, 2]], 1.0))


def test_diagnose_puts_the_whole_ap_loss_on_the_query_embedded_in_the_wrong_class():
    W = np.array([[1.0, 0.0], [0.0, 1.0]])
    D = normalise(np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]]))
    db_lab = np.array([0, 0, 1, 1])
    # query 0 sits in its own class's cluster, query 1 (class 0) in class 1's cluster
    Q = normalise(np.array([[1.0, 0.0], [0.05, 1.0]]))
    d = diagnose(Q, D, np.array([0, 0]), db_lab, np.array(["p1", "p2"]), W)
    assert d["queries"] == 2 and d["off_centre"] == 1
    assert d["map_on_centre"] == 1.0
    assert d["map_off_centre"] < 0.5
    assert d["loss_share_off_centre"] == 1.0
    assert d["patients_off_centre"] == 1 and d["patients"] == 2
    assert d["confusion"] == {0: {0: 1, 1: 1}}


def _fake_embeddings(pk, seed):
    """Class direction + noise, so the figures are neither 0 nor 1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16))
    return (centres[pk["labels"]] + 1.5 * rng.normal(size=(len(pk["labels"]), 16))).astype(np.float16)


@needs_datasets
def test_command_scores_tags_ensembles_and_tta_on_a_real_pack(tmp_path, datasets_root):
    import posthoc
    from evaluate import embed
    from evaluate import protocols
    from model import build_model
    from pack import load_pack

    mini_pack(tmp_path / "pack", datasets_root, per=3)
    pk = load_pack(tmp_path / "pack")
    x1, x5, y1 = (_fake_embeddings(pk, s) for s in (1, 2, 3))
    np.savez(tmp_path / "emb-x.npz", f1=x1, f5=x5)
    np.save(tmp_path / "emb-y-f1.npy", y1)
    torch.manual_seed(0)
    net = build_model(frozen_until=None, pretrained=True).eval()
    torch.save({"config": {"dim": 256, "pool": "gem"}, "model": net.state_dict()}, tmp_path / "last.pt")
    out = tmp_path / "posthoc.json"
    posthoc.main(["--pack", str(tmp_path / "pack"), "--emb", str(tmp_path / "emb-x.npz"),
                  "--emb", str(tmp_path / "emb-y-f1.npy"), "--ensemble", "x+y",
                  "--tta", f"{tmp_path / 'last.pt'}@5", "--tta-sizes", "224,256", "--save-views", str(tmp_path / "v"),
                  "--gallery", f"x={tmp_path / 'misses.png'}", "--out", str(out)])
    res = json.loads(out.read_text())
    assert set(res["tags"]) == {"x", "y", "x+y"}
    assert set(res["tags"]["x+y"]["folds"]) == {"1"}  # only the folds every part has
    q, db = protocols(pk, 1)["3class"]
    e = posthoc.ensemble([x1, y1])
    want = posthoc.score(e[q] @ e[db].T, pk["labels"][q], pk["labels"][db])
    assert res["tags"]["x+y"]["folds"]["1"]["base"] == want
    diag = res["tags"]["x"]["diagnosis"]["5"]
    assert diag["queries"] == len(protocols(pk, 5)["3class"][0])
    # the listed off-centre queries are the counted ones: query-fold rows, their own class, another nearest one
    for k, d in res["tags"]["x"]["diagnosis"].items():
        assert len(d["off_centre_rows"]) == d["off_centre"]
        for row, true, nearest in d["off_centre_rows"]:
            assert pk["folds"][row] == int(k) and pk["labels"][row] == true != nearest
    n_off = sum(d["off_centre"] for d in res["tags"]["x"]["diagnosis"].values())
    from PIL import Image
    assert Image.open(tmp_path / "misses.png").size == (14 * 96, max(1, -(-n_off // 14)) * 96)
    # the TTA's plain 224 view is the checkpoint's own embedding
    (t,) = res["tta"]
    assert set(t) >= {"224", "224+flip", "256", "256+flip", "224 + flip", "all sizes", "all sizes + flips"}
    q, db = protocols(pk, 5)["3class"]
    plain = posthoc.normalise(embed(net, torch.from_numpy(pk["images"])[torch.as_tensor(pk["eval_row"])]).astype(
        np.float64))
    assert t["224"] == posthoc.score(plain[q] @ plain[db].T, pk["labels"][q], pk["labels"][db])
    # a saved view reads back as a tag, e.g. to ensemble the checkpoint with another run
    assert sorted(f.name for f in (tmp_path / "v").iterdir()) == [
        "emb-v224-f5.npy", "emb-v224f-f5.npy", "emb-v256-f5.npy", "emb-v256f-f5.npy"]
    posthoc.main(["--pack", str(tmp_path / "pack"), "--emb", str(tmp_path / "emb-x.npz"),
                  "--emb", str(tmp_path / "v" / "emb-v224-f5.npy"), "--ensemble", "x+v224", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["tags"]["v224"]["folds"]["5"]["base"] == t["224"]
    assert set(res["tags"]["x+v224"]["folds"]) == {"5"}


@needs_datasets
@needs_datasets
def test_gallery_tiles_each_query_by_patient_and_numbers_patients_anonymously(tmp_path, datasets_root):
    from PIL import Image

    import posthoc
    from pack import load_pack

    mini_pack(tmp_path / "pack", datasets_root, per=3)
    pk = load_pack(tmp_path / "pack")
    rows = [int(r) for r in np.flatnonzero(pk["labels"] > 0)[:5]]
    n_pat = posthoc.gallery([[r, int(pk["labels"][r]), 1 + int(pk["labels"][r]) % 3] for r in rows], pk,
                            tmp_path / "g.png", cols=4, size=32)
    assert n_pat == len({str(pk["patients"][r]) for r in rows})
    sheet = np.asarray(Image.open(tmp_path / "g.png"))
    assert sheet.shape == (2 * 32, 4 * 32)
    # tiles are in patient order; a tile's lower middle (clear of both captions) is that query's image
    first = sorted(rows, key=lambda r: (str(pk["patients"][r]), r))[0]
    want = np.asarray(Image.fromarray(pk["images"][pk["eval_row"][first]]).resize((32, 32), Image.BILINEAR))
    assert np.array_equal(sheet[12:20, :32], want[12:20])
    # only 5 tiles: the second row's last two places stay empty (the fifth tile's caption may run past its tile)
    assert not sheet[32:, 64:].any()


def test_command_names_what_is_wrong_with_its_arguments(tmp_path, datasets_root):
    import posthoc

    mini_pack(tmp_path / "pack", datasets_root, per=2)
    np.save(tmp_path / "emb-x-f1.npy", np.random.default_rng(0).normal(size=(12, 4)).astype(np.float16))
    base = ["--pack", str(tmp_path / "pack"), "--emb", str(tmp_path / "emb-x-f1.npy")]
    with pytest.raises(SystemExit, match="expected CKPT@FOLD"):
        posthoc.main(base + ["--tta", "last.pt"])
    with pytest.raises(SystemExit, match="no checkpoint at"):
        posthoc.main(base + ["--tta", str(tmp_path / "missing.pt@5")])
    with pytest.raises(SystemExit, match="must include 224"):
        posthoc.main(base + ["--tta", str(tmp_path / "emb-x-f1.npy@1"), "--tta-sizes", "256"])
    with pytest.raises(SystemExit, match="expected whole numbers"):
        posthoc.main(base + ["--tta-sizes", "224,big"])
    with pytest.raises(SystemExit, match="expected sizes in pixels"):
        posthoc.main(base + ["--tta-sizes", "224,0"])
    torch.save({"config": {"dim": 256, "pool": "gem", "test_fold": 1}}, tmp_path / "f1.pt")
    with pytest.raises(SystemExit, match="trained without fold 1, so fold 5 is in its training data"):
        posthoc.main(base + ["--tta", f"{tmp_path / 'f1.pt'}@5"])
    torch.save({"config": {"dim": 256, "pool": "gem", "input_size": 320}}, tmp_path / "r320.pt")
    with pytest.raises(SystemExit, match="trained at 320, the pack holds 224x224"):
        posthoc.main(base + ["--tta", f"{tmp_path / 'r320.pt'}@5"])
    with pytest.raises(SystemExit, match=r"no embeddings for \['z'\]"):
        posthoc.main(base + ["--ensemble", "x+z"])
    with pytest.raises(SystemExit, match="expected TAG=IMAGE"):
        posthoc.main(base + ["--gallery", "x=misses.gif"])
    with pytest.raises(SystemExit, match="no embeddings for tag z"):
        posthoc.main(base + ["--gallery", f"z={tmp_path / 'g.png'}"])
