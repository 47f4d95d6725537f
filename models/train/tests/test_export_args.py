"""export.py's command line: an export outside models/ must not rewrite models/manifest.json, which names
its model by file name inside models/ (a manifest pointing elsewhere breaks `npm run eval:model` and the worker)."""
import json

import pytest

import export


def test_out_dir_elsewhere_needs_no_manifest(tmp_path, monkeypatch, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "manifest.json").write_text('{"file": "shipped.onnx"}\n')
    monkeypatch.setattr(export, "MODELS_DIR", models)

    def no_export(*a, **k):
        raise AssertionError("exported before the arguments were checked")
    monkeypatch.setattr(export, "load_net", no_export)
    with pytest.raises(SystemExit, match=r"--out-dir .*/elsewhere: models/manifest.json can only describe a model in "
                                         r".*/models; pass --no-manifest to export elsewhere"):
        export.main(["--random-head", "--version", "0.0.1", "--out-dir", str(tmp_path / "elsewhere")])
    assert json.loads((models / "manifest.json").read_text()) == {"file": "shipped.onnx"}
    # models/ itself (however spelled) and --no-manifest get past the check, to the export
    for extra in (["--out-dir", str(models / ".")], ["--out-dir", str(tmp_path), "--no-manifest"], []):
        with pytest.raises(AssertionError, match="exported before"):
            export.main(["--random-head", "--version", "0.0.1", *extra])
    with pytest.raises(SystemExit):
        export.main(["--help"])
    assert "needs --no-manifest" in capsys.readouterr().out
