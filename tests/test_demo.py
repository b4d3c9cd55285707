"""The README's main demo runs offline on scikit-learn digits and writes its report."""

import json

import pytest

from keras_compress import demo


@pytest.mark.slow
def test_demo_runs_recipe_to_int8_and_micro_and_writes_report(tmp_path):
    results = demo.run(out=str(tmp_path), epochs=4, sparsity=0.5, seed=1)
    assert (tmp_path / "report.md").read_text().startswith("# keras-compress demo")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["reloaded_weights_identical"] is True
    layers = saved["sparsity"]["layers"]
    assert layers["conv1"]["sparsity"] == 0.0  # kept dense on purpose
    for name in ("conv2", "fc1", "logits"):
        assert layers[name]["sparsity"] >= 0.5 - 0.01
    assert saved["fully_integer"] is True
    assert abs(saved["student_int8_litert_accuracy"] - saved["student_accuracy"]) <= 0.02
    assert saved["student_int8_micro_accuracy"] is not None
    # The 50 %-sparse student's flash image is encoded: smaller than the int8 file.
    assert saved["micro_flash_bytes"] < saved["sizes"]["student_int8"]
    assert saved["micro_decompression_bytes"] > 0
    assert any(t["method"] != "dense" for t in saved["micro_encodings"])
    for name in ("size_vs_accuracy.png", "student.keras", "student_int8.tflite",
                 "micro/student_model_data.cc", "android/student.tflite"):
        assert (tmp_path / name).is_file(), name
    assert 0.0 < results["teacher_accuracy"] <= 1.0
    # Unstructured zeros leave what the student stores and computes as it was.
    assert saved["profile"]["after"]["macs"] == saved["profile"]["before"]["macs"]


@pytest.mark.slow
def test_demo_with_channel_pruning_shrinks_the_student(tmp_path):
    results = demo.run(out=str(tmp_path), epochs=4, sparsity=0.5, structure="channel", seed=1)
    before, after = results["profile"]["before"], results["profile"]["after"]
    assert after["params"] < 0.6 * before["params"] and after["macs"] < 0.6 * before["macs"]
    assert "## What the student computes, before and after" in (tmp_path / "report.md").read_text()
    assert results["fully_integer"] is True
    assert abs(results["student_int8_litert_accuracy"] - results["student_accuracy"]) <= 0.02


def test_demo_refuses_too_few_epochs(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        demo.run(out=str(tmp_path), epochs=2)
