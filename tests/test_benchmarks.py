"""Smoke test: the pruning-overhead benchmark produces every column (numbers not asserted)."""

import json

import pytest

from benchmarks import _cache, _cases, _render, _report, pruning_overhead


@pytest.mark.slow
def test_pruning_overhead_benchmark_writes_its_section(data_dir, tmp_path):
    config = {"data_dir": str(data_dir), "rounds": 1, "batch_size": 256, "seed": 0,
              "models": ["lenet_300_100"]}
    ours = pruning_overhead.measure_keras_compress(config)
    result = ours["results"]["lenet_300_100"]
    assert result["plain"] > 0 and result["pruned"] > 0 and result["ratio"] > 0
    markdown = pruning_overhead.render(ours, None, config)
    _report.update("pruning_overhead", markdown, {"keras_compress": ours}, docs=tmp_path)
    _report.update("other", "## other", {"x": 1}, docs=tmp_path)
    _report.update("pruning_overhead", markdown, {"keras_compress": ours}, docs=tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.count("<!-- pruning_overhead:start -->") == 1 and "## other" in text
    assert "| lenet_300_100 |" in text and "not run" in text
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert set(data) == {"pruning_overhead", "other"}


@pytest.mark.slow
def test_qat_vs_ptq_benchmark_quick_run_fills_every_row(data_dir, tmp_path):
    from benchmarks import qat_vs_ptq

    config = {"data_dir": str(data_dir), "epochs": 1, "finetune_epochs": 1, "batch_size": 64,
              "seed": 0, "train_limit": 600, "test_limit": 200}
    result = qat_vs_ptq.run(config)
    rows = result["rows"]
    assert [r["method"].split()[0] for r in rows] == ["float", "PTQ", "float", "QAT"]
    assert all(r["int8"] is not None and 0 <= r["int8"] <= 1 for r in rows[1:])
    assert rows[-1]["fully_integer"] and rows[-1]["quantize_ops"] == 0
    markdown = qat_vs_ptq.render(result)
    _report.update(qat_vs_ptq.KEY, markdown, result, docs=tmp_path)
    assert "| QAT +1 epochs (keras-compress) |" in (tmp_path / "benchmarks.md").read_text()


@pytest.mark.slow
def test_distillation_benchmark_quick_run_fills_every_row(data_dir, tmp_path):
    from benchmarks import distillation

    config = {"data_dir": str(data_dir), "seeds": 1, "epochs": 1, "teacher_epochs": 1,
              "teacher_extra": False, "temperature": 4.0, "alpha": 0.1}
    result = distillation.run(config)
    assert set(result["rows"][0]) == {"seed", "alone", "distilled"}
    markdown = distillation.render(result)
    assert "Hinton et al. 2015" in markdown and "| 0 |" in markdown


@pytest.mark.slow
def test_mixed_precision_benchmark_quick_run_fills_every_row(data_dir):
    from benchmarks import mixed_precision

    config = {"data_dir": str(data_dir), "epochs": 1, "qat_epochs": 1, "max_drop": 0.005}
    result = mixed_precision.run_model("lenet_300_100", config)
    assert [layer["name"] for layer in result["layers"]] == ["fc1", "fc2", "logits"]
    assert set(result["runs"]) == {"int8", "mixed", "16x8"}
    for run in result["runs"].values():
        assert 0 <= run["litert"] <= 1 and run["size"] > 0
    markdown = mixed_precision.render([result], config)
    assert "### lenet_300_100" in markdown and "| chosen mix |" in markdown
    assert "| 16x8: int16 activations, int8 weights |" in markdown


@pytest.mark.slow
def test_deep_compression_benchmark_quick_run_fills_every_row(data_dir, tmp_path):
    from benchmarks import deep_compression

    config = {"data_dir": str(data_dir), "float_epochs": 1, "prune_epochs": 1,
              "hold_epochs": 0, "cluster_epochs": 1, "qat_epochs": 1, "flash_epochs": 1,
              "flash_qat_epochs": 1, "flash_prune_epochs": 1, "max_drop": 0.005}
    result = deep_compression.run_model("lenet_300_100", config)
    assert [len(result["rows"][p]) for p in ("A", "B")] == [6, 5]
    for row in result["rows"]["A"] + result["rows"]["B"]:
        assert 0 <= row["accuracy"] <= 1 and row["raw"] > 0 and row["gzip"] > 0
    assert result["rows"]["B"][1]["weight_types"] == ["INT4"]
    assert result["rows"]["A"][-1]["micro"] is not None
    # compress_micro on the 96 %-sparse clustered model: smaller flash, decoded
    # weights in a stated buffer, arena measured with it.
    pruned, encoded = result["rows"]["A"][-3], result["rows"]["A"][-1]
    assert encoded["raw"] < pruned["raw"] and encoded["decode_ram"] > 0 and encoded["arena"]
    assert any(t["method"] != "dense" for t in result["encodings"]["A"])
    markdown = deep_compression.render([result], config)
    assert "### lenet_300_100: per stage" in markdown and "Han et al. 2016" in markdown
    deep_compression.plot([result], tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_channel_pruning_benchmark_quick_run_measures_both_models(data_dir, tmp_path):
    """LeNet-5 from a fresh float baseline, channel-pruned, shrunk, QAT and int8:
    both models measured in LiteRT and TFLite-Micro, the pruned one smaller in
    MACs, flatbuffer and arena; a second run reads the trained row back."""
    from benchmarks import channel_pruning

    config = {"full": False, "seed": 0, "data_dir": str(data_dir), "cache_dir": str(tmp_path),
              "baselines_dir": "", "target": "channels", "sparsity": 0.35, "round_to": 4,
              "distill": True, "latency_rounds": 2, "frontier": ["lenet5"]}
    result = channel_pruning.run_case("lenet5", config)
    before, after = result["rows"]["unpruned int8"], result["rows"]["channel-pruned int8"]
    assert before["fully_integer"] and after["fully_integer"]
    assert after["macs"] < 0.7 * before["macs"] and after["bytes"] < 0.7 * before["bytes"]
    assert after["arena"] < before["arena"] and after["micro"] is not None
    assert result["ratios"]["litert"] > 0 and result["ratios"]["micro"] > 0
    assert "### lenet5" in channel_pruning.render([result], config)
    # The untrained settings' table: every setting shrinks the widths and the
    # flatbuffer; the MACs+parameters one removes at least its share of both.
    unpruned, *settings = result["frontier"]["rows"]
    assert len(settings) == len(channel_pruning.FRONTIER["lenet5"])
    for row in settings:
        assert sum(row["widths"]) < sum(unpruned["widths"]) and row["bytes"] < unpruned["bytes"]
        assert row["arena"] and row["litert_ms"] > 0 and row["micro_ms"] > 0
    both = next(r for r in settings if r["setting"].startswith("macs+params"))
    assert (both["macs"] / unpruned["macs"] + both["params"] / unpruned["params"]) / 2 <= 0.5
    assert "What each setting buys" in channel_pruning.render([result], config)
    # A case measured elsewhere keeps its own date and CPU in its heading.
    dated = {**result, "date": "2026-01-02", "cpu": "Some CPU (AVX2)", "machine": "x86_64, 2 cores"}
    assert "; run 2026-01-02 on Some CPU (AVX2), 2 cores)" in channel_pruning.render([dated], config)
    cached = [p for p in tmp_path.iterdir() if "-channel-" in p.name]
    assert len(cached) == 1
    again = channel_pruning.run_case("lenet5", config)
    assert again["rows"]["channel-pruned int8"]["bytes"] == after["bytes"]


@pytest.mark.slow
def test_suite_smallest_case_produces_every_column(data_dir, tmp_path):
    """`benchmarks.run` end to end on LeNet-300-100 with TFMOT in its subprocess
    (tiny sizes): every artifact gets every column; numbers are not asserted."""
    from benchmarks import run

    config = {"full": False, "data_dir": str(data_dir), "tfmot": True, "latency_runs": 5,
              "seed": 0, "sizes": (1000, 200, 1, 1, 1), "cache_dir": str(tmp_path / "cache"),
              "timing": (1, 10)}  # --quick itself times no steps
    result = run.run_case("lenet_300_100", config)
    rows = result["rows"]
    assert list(rows) == ["float32", "PTQ int8", "keras-compress", "TFMOT"]
    for label, row in rows.items():
        for column in ("litert", "raw", "gzip", "raw_ratio", "gzip_ratio", "latency_ms",
                       "conversion_s"):
            assert row[column] is not None, (label, column)
        if label != "float32":
            assert row["fully_integer"] and row["micro"] is not None and row["arena"] > 0
            assert row["latency_vs_float"] > 0
    for label in ("keras-compress", "TFMOT"):
        for column in ("step_ratio", "prune_step_ratio", "qat_step_ratio"):
            assert rows[label][column] > 0, (label, column)
    assert rows["keras-compress"]["latency_vs_tfmot"] > 0
    assert rows["keras-compress"]["sparsity"] > 0.5 and rows["TFMOT"]["sparsity"] > 0.5
    markdown = _render.render([result], config)
    assert "| TFMOT |" in markdown and "| keras-compress |" in markdown
    assert "Step ratios by phase" in markdown and "Published reference rows" in markdown
    _render.plot([result], tmp_path / "suite.png")
    assert (tmp_path / "suite.png").read_bytes()[:4] == b"\x89PNG"

    # Run again: every trained row comes from the cache, but the step times,
    # TFMOT's included, are measured in this run (the timing peer).
    again = run.run_case("lenet_300_100", config)
    for label in ("keras-compress", "TFMOT"):
        assert again["rows"][label]["sparsity"] == rows[label]["sparsity"]
    first, second = result["peer"], again["peer"]
    assert second["keras_accuracy"] == first["keras_accuracy"]  # the cached training
    for phase in ("plain", "prune", "qat"):
        assert second[f"{phase}_step_s"] > 0
        assert second[f"{phase}_step_s"] != first[f"{phase}_step_s"], phase


def test_suite_other_tools_rows(data_dir, tmp_path):
    """The rows of Keras' own quantize + LiteRT export and of ai-edge-quantizer's
    recipes: each is an artifact measured like the others, or a note saying
    why it has none; the 16x8 recipe's accuracy holds when its int16 input is
    quantized, and a plain cast is shown to be the misuse."""
    from benchmarks import other_tools, run

    config = {"full": False, "data_dir": str(data_dir), "tfmot": False, "latency_runs": 5,
              "seed": 0, "sizes": (1000, 200, 1, 1, 1), "cache_dir": str(tmp_path / "cache"),
              "timing": (0, 10), "distill": False, "other_tools": True}
    result = run.run_case("lenet5", config)
    rows, failed = result["rows"], result["other_tools_failed"]
    assert set(rows) | set(failed) == {"float32", "PTQ int8", "keras-compress",
                                       *other_tools.LABELS}
    assert failed.keys() <= {"Keras int8"}  # Keras 3.15's int8 export fails in the converter
    # ai-edge-quantizer stores weights after the flatbuffer, which TFLite-Micro
    # reads once they are moved inside
    assert rows["AEQ static_wi8_ai8"]["weights_moved_inside"]
    for label in set(rows) & set(other_tools.LABELS):
        assert rows[label]["raw"] > 0 and rows[label]["latency_ms"] > 0, label
    a8w8 = rows["AEQ static_wi8_ai8"]
    assert a8w8["fully_integer"] and a8w8["micro"] is not None
    assert abs(a8w8["litert"] - rows["PTQ int8"]["litert"]) <= 0.05
    assert abs(a8w8["micro"] - a8w8["litert"]) <= 0.01
    for label in ("AEQ dynamic_wi4_afp32", "AEQ weight_only_wi4_afp32"):
        assert not rows[label]["fully_integer"] and rows[label]["micro_note"], label
    a16 = rows["AEQ static_wi8_ai16"]
    assert a16["litert"] >= rows["float32"]["litert"] - 0.05
    assert a16["litert_unquantized_input"] < a16["litert"] - 0.3
    markdown = _render.render([result], config)
    assert "| AEQ static_wi8_ai8 |" in markdown and "a misuse, not a defect" in markdown
    _render.plot([result], tmp_path / "suite.png")


def test_suite_runs_of_separate_cases_keep_each_others_results(tmp_path):
    """Two `--cases=` runs going on at once: the one finishing last keeps the
    result the other wrote meanwhile, and a case rerun replaces its own."""
    from benchmarks import run

    key = "suite_full"
    _report.update(key, "old", {"results": [{"case": "resnet8", "v": 1}]}, docs=tmp_path)
    # A run of ds_cnn started here (it read the section then) ...
    _report.update(key, "new", {"results": [{"case": "resnet8", "v": 2},
                                            {"case": "lenet5", "v": 1}]}, docs=tmp_path)
    # ... and finishes after another run rewrote the section.
    results = run._accumulate({"ds_cnn": {"case": "ds_cnn", "v": 1}}, key, tmp_path)
    assert [(r["case"], r["v"]) for r in results] == [("lenet5", 1), ("resnet8", 2),
                                                      ("ds_cnn", 1)]
    results = run._accumulate({"lenet5": {"case": "lenet5", "v": 3}}, key, tmp_path)
    assert [(r["case"], r["v"]) for r in results] == [("lenet5", 3), ("resnet8", 2)]


def test_suite_float_schedule_warms_up_then_decays_to_zero():
    """The float baseline's learning rate rises to its peak over the warm-up
    epochs and decays to zero by the last step, also in a run shorter than
    its warm-up (the smoke tests' one-epoch baselines)."""
    import keras


    recipe = {"optimizer": "sgd", "lr": 0.1, "warmup": 2}
    schedule = _cases.float_schedule(keras, recipe, 100, 10)
    assert float(schedule(10)) == pytest.approx(0.05)
    assert float(schedule(20)) == pytest.approx(0.1)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    short = _cases.float_schedule(keras, recipe, 10, 10)
    assert float(short(9)) == pytest.approx(0.1) and float(short(10)) == pytest.approx(0.0, abs=1e-9)
    adam = _cases.float_schedule(keras, {"optimizer": "adam", "lr": 1e-3}, 100, 10)
    assert float(adam(0)) == pytest.approx(1e-3)


def test_suite_tune_rate_is_constant_or_a_half_cosine_per_epoch():
    """The compressing fits' learning rate, shared by our fit and TFMOT's two:
    constant, or a half cosine over the prune + QAT epochs that starts at the
    peak, falls every epoch and stays above zero in the last; an unknown decay
    is refused by name."""

    setup = {"learning_rate": 1e-4, "prune_epochs": 8, "qat_epochs": 4}
    assert [_cases.tune_rate(setup, e) for e in (0, 5, 11)] == [1e-4] * 3
    cosine = [_cases.tune_rate({**setup, "lr_decay": "cosine"}, e) for e in range(12)]
    assert cosine[0] == pytest.approx(1e-4) and cosine[6] == pytest.approx(5e-5)
    assert all(a > b for a, b in zip(cosine, cosine[1:])) and 0 < cosine[-1] < 2e-6
    with pytest.raises(ValueError, match="lr_decay"):
        _cases.tune_rate({**setup, "lr_decay": "step"}, 0)


def test_suite_prunes_the_layers_tfmot_prunes(data_dir):
    """Like for like with TFMOT, whose prune registry has no prunable weight
    for DepthwiseConv2D: the suite's compressing DS-CNN leaves its depthwise
    kernels dense and prunes the rest to the target (one real CIFAR-10 batch)."""
    import keras
    import numpy as np

    import keras_compress as kc

    setup = {"model": "ds_cnn", "dataset": "cifar10", "data_dir": str(data_dir), "seed": 0,
             "train_images": 64, "test_images": 8}
    (x, y), _ = _cases.load_case_data(setup)
    float_weights = kc.models.ds_cnn().get_weights()
    model = _cases.compressing_model("ds_cnn", _cases.CASES["ds_cnn"], float_weights, (32, 32, 3),
                                   kc.ConstantSparsity(0.5, 0))
    model.compile(keras.optimizers.Adam(1e-4),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[kc.PruningCallback()])
    report = kc.sparsity(model)  # the pruned layers, kernel * mask
    layers = kc.models.ds_cnn().layers
    depthwise = {lay.name for lay in layers if isinstance(lay, keras.layers.DepthwiseConv2D)}
    kernels = {lay.name for lay in layers if isinstance(lay, (keras.layers.Conv2D,
                                                             keras.layers.Dense))}
    assert depthwise and set(report.layers) == kernels - depthwise
    assert all(np.isclose(r.sparsity, 0.5, atol=0.01) for r in report)


def test_suite_float_fit_resumes_after_an_interruption(data_dir, tmp_path):
    """A float baseline fit stopped after its second epoch resumes from the
    backup on the next call: it runs only the remaining epoch, the optimizer
    continues at the step it reached (so the schedule ends at zero, not
    restarted), and the backup is gone once the fit completes."""
    import keras
    import numpy as np

    import keras_compress as kc

    setup = {"model": "lenet_300_100", "dataset": "mnist", "data_dir": str(data_dir),
             "seed": 0, "train_images": 512, "test_images": 64}
    (x, y), _ = _cases.load_case_data(setup)
    data = _cases.training_data(x, y, 64, False, 0)
    recipe = {"optimizer": "sgd", "lr": 0.1, "warmup": 1}
    backup = tmp_path / "lenet.backup"

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("session over")

    class Begin(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [np.array(w) for w in self.model.get_weights()]
            self.step = int(self.model.optimizer.iterations)

    keras.utils.set_random_seed(0)
    model = kc.models.lenet_300_100()
    with pytest.raises(KeyboardInterrupt):
        _cases.train_float(model, data, recipe, 3, 8, backup_dir=backup, callbacks=[Stop()])
    assert backup.exists()
    stopped = [np.array(w) for w in model.get_weights()]

    fresh, begin = kc.models.lenet_300_100(), Begin()
    history = _cases.train_float(fresh, data, recipe, 3, 8, backup_dir=backup, callbacks=[begin])
    assert history.epoch == [2]
    assert begin.step == 2 * 8 and int(fresh.optimizer.iterations) == 3 * 8
    assert all(np.array_equal(a, b) for a, b in zip(begin.weights, stopped))
    assert float(fresh.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    assert not backup.exists()


def test_suite_float_baseline_moves_between_machines(data_dir, tmp_path):
    """An interrupted float fit published to the committed store resumes on a
    machine with an empty cache: seeding copies the backup (all or nothing,
    not over a cache that is further along), the fit runs only its remaining
    epoch, and the finished weights then replace the backup in the store."""
    import keras
    import numpy as np

    import keras_compress as kc
    from benchmarks import _baselines

    setup = {"model": "lenet_300_100", "dataset": "mnist", "data_dir": str(data_dir),
             "seed": 0, "train_images": 256, "test_images": 64}
    (x, y), _ = _cases.load_case_data(setup)
    data = _cases.training_data(x, y, 64, False, 0)
    recipe = {"optimizer": "adam", "lr": 1e-3}
    store, cached = tmp_path / "store", tmp_path / "old" / "lenet-abc.npz"

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("session over")

    with pytest.raises(FileNotFoundError, match="Nothing to publish"):
        _baselines.publish(cached, store)
    keras.utils.set_random_seed(0)
    model = kc.models.lenet_300_100()
    with pytest.raises(KeyboardInterrupt):
        _cases.train_float(model, data, recipe, 3, 4, backup_dir=_baselines.backup_dir(cached),
                        callbacks=[Stop()])
    stopped = [np.array(w) for w in model.get_weights()]
    assert "after epoch 2" in _baselines.publish(cached, store)
    assert sorted(p.name for p in store.rglob("*")) == [
        "latest.weights.h5", "lenet-abc.backup", "training_metadata.json"]

    new = tmp_path / "new" / "lenet-abc.npz"  # the next machine's cache
    assert "after epoch 2" in _baselines.seed(new, store)
    assert _baselines.seed(new, store) is None  # not as far along as the cache now
    fresh, begin = kc.models.lenet_300_100(), []
    history = _cases.train_float(fresh, data, recipe, 3, 4, backup_dir=_baselines.backup_dir(new),
                              callbacks=[keras.callbacks.LambdaCallback(
                                  on_train_begin=lambda logs: begin.extend(fresh.get_weights()))])
    assert history.epoch == [2] and int(fresh.optimizer.iterations) == 3 * 4
    assert all(np.array_equal(a, b) for a, b in zip(begin, stopped))

    np.savez(new, w0=fresh.get_weights()[0])
    assert _baselines.finish(new, tmp_path / "elsewhere") is None  # no backup there to replace
    assert "trained weights" in _baselines.finish(new, store)
    assert sorted(p.name for p in store.iterdir()) == ["lenet-abc.npz"]
    last = tmp_path / "last" / "lenet-abc.npz"
    assert "trained weights" in _baselines.seed(last, store)
    assert last.read_bytes() == new.read_bytes() and _baselines.seed(last, store) is None


@pytest.mark.slow
def test_suite_distilled_row_on_resnet8(data_dir):
    """The ResNet-8 case's extra row, prune + QAT distilled from the float
    baseline, gets every column, its own step ratios, and a place in the
    rendered tables and reference rows (tiny sizes, no TFMOT)."""
    from benchmarks import run

    config = {"full": False, "data_dir": str(data_dir), "tfmot": False, "latency_runs": 5,
              "seed": 0, "sizes": (256, 64, 1, 1, 1), "timing": (1, 10)}
    result = run.run_case("resnet8", config)
    rows = result["rows"]
    assert list(rows) == ["float32", "PTQ int8", "keras-compress", _cases.DISTILLED]
    row = rows[_cases.DISTILLED]
    assert row["fully_integer"] and row["litert"] is not None and row["micro"] is not None
    assert row["sparsity"] > _cases.CASES["resnet8"]["sparsity"] - 0.1 and row["arena"] > 0
    for column in ("step_ratio", "prune_step_ratio", "qat_step_ratio"):
        assert row[column] > 0 and row[column] != rows["keras-compress"][column]
    markdown = _render.render([result], config)
    assert f"| {_cases.DISTILLED} |" in markdown and "distilled vs not: resnet8" in markdown


def test_suite_trained_rows_are_kept_and_travel_between_machines(tmp_path, monkeypatch):
    """A compressing row's trained artifact is computed once per key: a second
    run loads it (same bytes, same measurements) instead of training, and a
    run on a machine with an empty cache takes it from the committed store
    after `--publish_baselines`, which drops the store's rows of the same kind
    under another key. The key follows the row, the seed and the recipe; no
    cache folder, no key."""
    import keras

    import tflite_export

    tfl = tflite_export.convert(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
                                mode="float32")
    calls = []

    def train():
        calls.append(1)
        return tfl, {"keras_accuracy": 0.5, "sparsity": 0.3, "conversion_s": 1.0}

    store = tmp_path / "store"
    config = {"full": True, "seed": 0, "cache_dir": str(tmp_path / "cache"),
              "baselines_dir": str(store)}
    ours = _cache.row_cache(config, "resnet8", "keras-compress")
    assert ours.parent == tmp_path / "cache"
    assert ours.name.startswith(_cache.row_prefix("resnet8", "keras-compress"))
    assert len({ours, _cache.row_cache(config, "resnet8", _cases.DISTILLED),
                _cache.row_cache(config, "resnet8", "TFMOT"),
                _cache.row_cache({**config, "seed": 1}, "resnet8", "keras-compress")}) == 4
    assert _cache.row_cache({**config, "cache_dir": ""}, "resnet8", "TFMOT") is None

    first = _cache.cached_row(ours, config, train)
    again = _cache.cached_row(ours, config, train)
    assert len(calls) == 1
    assert again[0].content == tfl.content and again[1] == first[1]

    store.mkdir()
    stale = store / (_cache.row_prefix("resnet8", "keras-compress") + "0123456789abcdef.npz")
    stale.write_bytes(b"an older recipe's row")
    other = store / (_cache.row_prefix("resnet8", _cases.DISTILLED) + "0123456789abcdef.npz")
    other.write_bytes(b"another row, kept")  # its name begins like ours
    published = _cache.publish_rows(config, "resnet8", store)
    assert len(published) == 1 and published[0].startswith("keras-compress row")
    assert sorted(p.name for p in store.iterdir()) == sorted([ours.name, other.name])
    other.unlink()

    elsewhere = {**config, "cache_dir": str(tmp_path / "new")}  # the next machine
    moved = _cache.row_cache(elsewhere, "resnet8", "keras-compress")
    assert moved.name == ours.name
    loaded = _cache.cached_row(moved, elsewhere, train)
    assert len(calls) == 1 and moved.exists()
    assert loaded[0].content == tfl.content and loaded[1] == first[1]

    peer = _cache.row_cache(config, "resnet8", "TFMOT")
    monkeypatch.setitem(_cases.CASES["resnet8"], "prune", {"ranking": "layer"})  # ours only
    assert _cache.row_cache(config, "resnet8", "keras-compress") != ours
    assert _cache.row_cache(config, "resnet8", "TFMOT") == peer
    monkeypatch.setitem(_cases.CASES["resnet8"], "tune_lr", 1e-3)                # both sides
    assert _cache.row_cache(config, "resnet8", "TFMOT") != peer


@pytest.mark.slow
def test_step_profile_sees_fake_quant_only_once_qat_is_on(data_dir):
    """The per-op profile of the suite's LeNet-300-100 (real MNIST batches):
    the plain step runs no FakeQuant op; the compressing step runs none while
    its quantizers only observe (prune phase: the switch skips the work) and
    one per quantized tensor once QAT is on (input, three activations, three
    kernels); the markdown names the ops."""
    from benchmarks import step_profile

    steps = 4
    plain, observing = step_profile.profile_case("lenet_300_100", "prune", steps, str(data_dir))
    _, quantizing = step_profile.profile_case("lenet_300_100", "qat", steps, str(data_dir))

    def fake_quant_ops(stats):
        return {s.name: s.occurrences for s in stats if s.type == "FakeQuantWithMinMaxVars"}

    # The Dense layers' matmuls are profiled: MatMul / _FusedMatMul, or with
    # oneDNN (TensorFlow picks it per CPU) _MklMatMul / _MklNativeFusedMatMul.
    assert any("MatMul" in s.type for s in plain)
    assert fake_quant_ops(plain) == {} and fake_quant_ops(observing) == {}
    # Seven FakeQuant ops, each run every step. (With oneDNN on, TensorFlow's
    # profiler records the 784x300 kernel's op twice per step; off, once.)
    ops = fake_quant_ops(quantizing)
    assert len(ops) == 7 and all(runs in (steps, 2 * steps) for runs in ops.values()), ops
    # Which op types rank first depends on the machine's timing noise, so the
    # table is asked for every op type and op: then its rows are certain.
    table = step_profile.compare(plain, quantizing, steps, top=len(quantizing))
    assert "| FakeQuantWithMinMaxVars | 0.000 |" in table and "quant_fc1" in table
    kinds = {s.type for s in plain} | {s.type for s in quantizing}
    assert table.count("\n| ") == 2 + len(kinds) + len(quantizing)  # two header rows
    with pytest.raises(ValueError, match="phase"):
        step_profile.profile_case("lenet_300_100", "train", steps, str(data_dir))


@pytest.mark.slow
def test_micro_flash_encodes_a_committed_suite_row(data_dir):
    """`benchmarks.micro_flash` on the committed ResNet-8 row (5 real CIFAR-10
    images): less flash, outputs identical to the unencoded model."""
    import numpy as np

    import tflite_export
    from benchmarks import micro_flash

    rows = micro_flash.committed_rows("resnet8")
    assert set(rows) == set(micro_flash.ROWS)
    config = {"dataset": "cifar10", "data_dir": str(data_dir), "model": "resnet8", "seed": 0,
              "train_images": 1, "test_images": 5}
    _, (xt, yt) = _cases.load_case_data(config)
    with np.load(rows["keras-compress"], allow_pickle=False) as stored:
        tfl = tflite_export.TFLiteModel(stored["tflite"].tobytes(), mode="int8")
    result = micro_flash.measure(tfl, xt, yt)
    assert result["bytes_after"] < result["bytes_before"] and result["identical_outputs"]
    assert result["decode_ram"] > 0 and result["arena_after"] > 0
    markdown = micro_flash.render({"resnet8": {"keras-compress": result}}, 5)
    assert "| resnet8 | keras-compress |" in markdown
