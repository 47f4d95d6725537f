import torch

from layers import GeM, create_pool, gem


def test_p1_is_average_pooling():
    x = torch.rand(2, 5, 7, 7) + 0.01
    torch.testing.assert_close(gem(x, p=1.0), x.mean(dim=(2, 3)), rtol=1e-6, atol=1e-6)


def test_large_p_tends_to_max():
    x = torch.rand(2, 5, 7, 7) + 0.01
    y = gem(x.double(), p=200.0)
    mx = x.double().amax(dim=(2, 3))
    assert torch.all(y <= mx + 1e-9)
    # (mean x^p)^(1/p) >= max * (1/49)^(1/p)
    assert torch.all(y >= mx * (1 / 49) ** (1 / 200) - 1e-9)
    torch.testing.assert_close(y, mx, rtol=0.03, atol=0)


def test_p3_matches_hand_computation():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = ((1 + 8 + 27 + 64) / 4) ** (1 / 3)
    assert abs(float(GeM(p=3.0)(x)) - expected) < 1e-5


def test_eps_clamps_non_positive_values():
    x = torch.zeros(1, 1, 2, 2)
    assert torch.isfinite(gem(x)).all()


def test_factory():
    x = torch.rand(3, 4, 7, 7)
    assert create_pool("avg")(x).shape == (3, 4)
    torch.testing.assert_close(create_pool("max")(x), x.amax(dim=(2, 3)))
    assert isinstance(create_pool("gem"), GeM) and float(create_pool("gem").p) == 3.0
    try:
        create_pool("nope")
    except ValueError:
        pass
    else:
        raise AssertionError("unknown pooling must fail")
