"""ablate.py chooses between designs, so like paired.py it refuses the shipped model's test fold
unless told, and refuses before the backbone loads."""
import pytest

import ablate


class Started(Exception):
    pass


@pytest.fixture
def no_backbone(monkeypatch):
    def started(*a, **k):
        raise Started
    monkeypatch.setattr(ablate, "GoogLeNetBackbone", started)


@pytest.mark.parametrize("what", ["pool", "dim", "pool,dim", "cv"])
def test_the_test_fold_is_refused_by_default(tmp_path, no_backbone, capsys, what):
    with pytest.raises(SystemExit) as e:
        ablate.main(["--what", what, "--out", str(tmp_path / "a.json")])
    assert e.value.code == 2
    assert "fold 5 is the shipped model's test fold" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--fold", "1"], ["--include-test-fold"], ["--fold", "5", "--test-fold", "3"]])
def test_another_fold_or_the_flag_gets_past_the_guard(tmp_path, no_backbone, extra):
    with pytest.raises(Started):
        ablate.main(["--what", "pool,dim", "--out", str(tmp_path / "a.json"), *extra])


def test_cv_needs_the_flag_even_with_another_fold(tmp_path, no_backbone):
    with pytest.raises(SystemExit):
        ablate.main(["--what", "cv", "--fold", "1", "--out", str(tmp_path / "a.json")])
    with pytest.raises(Started):
        ablate.main(["--what", "cv", "--include-test-fold", "--out", str(tmp_path / "a.json")])
