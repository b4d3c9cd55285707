"""The README's Python snippets, and those of the guides that continue its quick
start, run as written (from a folder beside ../shared)."""

import os
import re

import pytest

import keras_compress as kc

from conftest import REPO


@pytest.mark.slow
def test_readme_quick_start_and_export_run(data_dir, tmp_path, monkeypatch):
    def snippets(page):
        return re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), re.S)

    blocks = snippets("README.md")
    assert len(blocks) >= 2
    guides = [b for page in ("docs/quantization.md", "docs/clustering_lowrank.md",
                             "docs/distillation.md") for b in snippets(page)]
    (tmp_path / "shared").symlink_to(data_dir.parent)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    namespace: dict = {}
    qat = next(b for b in guides if "kc.quantize(" in b)
    recipe = next(b for b in guides if "kc.recipe(" in b)
    clustering = next(b for b in guides if "kc.cluster(" in b)
    for block in [*blocks[:2], qat, clustering, recipe]:  # each builds on the ones before
        quiet = block.replace("callbacks=", "verbose=0, callbacks=").replace(
            "epochs=4)", "epochs=4, verbose=0)")
        exec(compile(quiet, "README", "exec"), namespace)
    assert namespace["tfl"].is_fully_integer
    assert namespace["int8"].is_fully_integer
    assert set(namespace["int8"].ops) == {"RESHAPE", "FULLY_CONNECTED"}
    assert namespace["tiny"].is_fully_integer
    assert namespace["clustered_int8"].is_fully_integer
    assert namespace["flash"].model.size <= namespace["clustered_int8"].size
    assert namespace["small"].count_params() < 0.4 * kc.models.lenet_300_100().count_params()
    assert kc.sparsity(namespace["student"]).overall >= 0.8
    assert sorted(os.listdir("report")) == ["report.json", "report.md", "size_vs_accuracy.png"]
    assert (tmp_path / "work" / "firmware" / "lenet_model_data.cc").is_file()
