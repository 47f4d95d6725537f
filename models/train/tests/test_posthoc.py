"""Post-hoc re-ranking maths on hand-checkable vectors."""
import numpy as np

from posthoc import aqe, dba, diffusion, normalise


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
