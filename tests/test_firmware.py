"""Models built into Cortex-M firmware and run under qemu-system-arm.

Needs the Arm GNU toolchain and QEMU (Debian: gcc-arm-none-eabi,
libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib, qemu-system-arm; CI
installs them) and TensorFlow Lite Micro's sources in ../shared/tflm. Outside
CI the tests skip when those are missing; in CI they fail instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_compress as kc
import tflite_export
from conftest import REPO, compile_classifier
from tflite_export import firmware

L = keras.layers
TFLM = REPO.parent / "shared" / "tflm" / "tflite-micro-src.tar.xz"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def tflm():
    source = os.environ.get("TFLM_SOURCE", str(TFLM))
    if not os.path.exists(source):
        _unavailable(f"TensorFlow Lite Micro sources not found at {source}")
    try:
        firmware.find_toolchain()
    except firmware.ToolMissing as exc:
        _unavailable(str(exc))
    return source


@pytest.fixture(scope="module")
def zoo(digits_split):
    """Small int8 models on the digits: one graph with conv, depthwise, a
    residual Add, a Concatenate and dense; one with 4-bit weights; one whose
    clustered weights are stored LUT-compressed (TFLM_DECODE)."""
    (x, y), (xt, _) = digits_split
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    b = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(a)
    c = L.Add()([a, b])
    d = L.Conv2D(4, 1, activation="relu", name="branch")(c)
    e = L.Concatenate()([c, d])
    f = L.MaxPooling2D()(e)
    g = L.Dense(10, name="head")(L.Flatten()(f))
    graph = compile_classifier(keras.Model(inputs, g))
    graph.fit(x, y, epochs=2, batch_size=64, verbose=0)
    models = {"graph": tflite_export.convert(graph, mode="int8", representative_data=x[:200])}

    small = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"),
                              L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10)])
    qat = compile_classifier(kc.quantize(small, weight_bits=4))
    qat.fit(x, y, epochs=2, batch_size=64, verbose=0)
    int4 = tflite_export.convert(kc.strip(qat), mode="int8", io_dtype="int8")
    assert "INT4" in {t.dtype for t in int4.tensors}
    models["int4"] = int4

    keras.utils.set_random_seed(2)
    dense = compile_classifier(keras.Sequential([
        keras.Input((8, 8, 1)), L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10)]))
    dense.fit(x, y, epochs=2, batch_size=64, verbose=0)
    clustered = compile_classifier(kc.cluster(dense, n_clusters=8))
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    plain = tflite_export.convert(kc.strip(clustered), mode="int8", representative_data=x[:200])
    compressed = tflite_export.compress_micro(plain, methods=("lut",))
    assert any(t.method == "lut" for t in compressed.encoded)
    models["lut"] = compressed.model
    models["lut_plain"] = plain   # what LiteRT (no TFLM_DECODE kernel) runs instead
    return models, xt[:6]


@pytest.mark.parametrize("kind", ["graph", "int4", "lut"])
def test_zoo_model_runs_as_m4_firmware_bit_exact(zoo, tflm, tmp_path, kind):
    models, xt = zoo
    tfl = models[kind]
    result = firmware.firmware(tfl, tmp_path, target="cortex-m4", tflm=tflm, inputs=xt,
                               progress=False)
    assert result.bit_exact and result.samples == len(xt)
    board = firmware.BOARDS["cortex-m4"]
    assert result.fits and result.model_bytes == tfl.size
    assert result.model_bytes < result.flash_bytes <= board.flash_bytes
    assert 0 < result.arena_used_bytes < result.ram_bytes <= board.ram_bytes
    # One count per Invoke, each within a few hundred instructions of the others.
    counts = result.instructions
    assert len(counts) == len(xt) and min(counts) > 1000
    assert max(counts) - min(counts) < 0.01 * min(counts)
    # The outputs are what the model computes: the argmax of the int8 logits
    # agrees with LiteRT's on these inputs.
    if kind == "graph":
        # The test inputs live outside the part's flash: one input or six, same flash.
        one = firmware.build_firmware(tfl, tmp_path / "one", target="cortex-m4", tflm=tflm,
                                      inputs=xt[:1], progress=False)
        assert one.sizes.flash == result.flash_bytes
    litert = tflite_export.predict(models.get(f"{kind}_plain", tfl), xt, "litert")
    device = np.concatenate([sample[0] for sample in result.outputs]).reshape(litert.shape)
    np.testing.assert_array_equal(device.argmax(-1), litert.argmax(-1))


def test_reference_kernels_agree_and_cmsis_nn_needs_fewer_instructions(zoo, tflm, tmp_path):
    models, xt = zoo
    runs = {k: firmware.firmware(models["graph"], tmp_path / k, target="cortex-m4", tflm=tflm,
                                 inputs=xt[:2], kernels=k, progress=False)
            for k in ("cmsis_nn", "reference")}
    assert all(r.bit_exact for r in runs.values())
    assert runs["cmsis_nn"].outputs[0][0].tobytes() == runs["reference"].outputs[0][0].tobytes()
    assert runs["cmsis_nn"].instructions_per_inference < runs["reference"].instructions_per_inference


def test_a_model_too_big_for_the_part_names_the_section_and_bytes(zoo, tflm, tmp_path):
    models, xt = zoo
    tiny_flash = firmware.BOARDS["cortex-m4"].with_memory(flash_kb=48)
    with pytest.raises(firmware.FitError, match=r"FLASH overflows by [\d,]+ bytes") as info:
        firmware.build_firmware(models["graph"], tmp_path / "flash", target=tiny_flash,
                                tflm=tflm, progress=False)
    assert info.value.region == "FLASH" and info.value.over_bytes > 0
    # RAM for the stack and buffers, but not for the tensor arena: the device
    # reports how much is missing.
    tight_ram = firmware.BOARDS["cortex-m4"].with_memory(ram_kb=21)
    fw = firmware.build_firmware(models["graph"], tmp_path / "ram", target=tight_ram, tflm=tflm,
                                 inputs=xt[:1], progress=False)
    with pytest.raises(firmware.FitError, match=r"section \.arena does not fit: RAM overflows "
                                                r"by [\d,]+ bytes") as info:
        firmware.run_firmware(fw)
    assert info.value.over_bytes > 0


def test_missing_toolchain_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(firmware.ToolMissing, match="apt-get install gcc-arm-none-eabi"):
        firmware.find_toolchain()
    with pytest.raises(ValueError, match="unknown target 'cortex-m99'"):
        firmware.board("cortex-m99")
    with pytest.raises(ValueError, match="cortex-m0plus.*qemu-system-arm"):
        firmware.board("cortex-m0plus")
    with pytest.raises(ValueError, match="`kernels` must be 'cmsis_nn' or 'reference'"):
        firmware.build_firmware(b"", tmp_path, kernels="fast")


def test_cli_builds_and_runs_firmware(zoo, tflm, tmp_path):
    models, xt = zoo
    models["graph"].save(tmp_path / "m.tflite")
    np.save(tmp_path / "x.npy", xt[:2])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "tflite_export", "firmware", "--tflite=m.tflite",
         "--target=cortex-m4", f"--tflm={tflm}", "--inputs=x.npy", "--out_dir=fw"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads((tmp_path / "fw" / "firmware.json").read_text())[0]
    assert row["bit_exact"] and row["fits"] and row["instructions_per_inference"] > 0
    assert "| cortex-m4 | cmsis_nn | yes |" in done.stdout
    assert (tmp_path / "fw" / "firmware.elf").is_file() and (tmp_path / "fw" / "link.ld").is_file()


@pytest.mark.slow
def test_m55_with_helium_runs_bit_exact(zoo, tflm, tmp_path):
    models, xt = zoo
    result = firmware.firmware(models["graph"], tmp_path, target="cortex-m55", tflm=tflm,
                               inputs=xt[:2], progress=False)
    assert result.bit_exact and result.instructions_per_inference > 0


def test_an_op_without_a_kernel_in_the_tree_is_named(tflm):
    from tflite_export.firmware import tflm as tflm_lib

    root = tflm_lib.tflm_root(tflm)
    assert {"CONV_2D", "FULLY_CONNECTED"} <= tflm_lib.registrations(root, ["AddConv2D",
                                                                           "AddFullyConnected"])
    with pytest.raises(ValueError, match=r"has no AddStft\(\).*no kernel for that op"):
        tflm_lib.registrations(root, ["AddStft"])


def test_builders_sharing_a_cache_take_turns(tmp_path, monkeypatch):
    """Two builds into one cache at once (parallel tests, a benchmark beside a
    notebook): the second waits for the first's lock, then finds its files,
    instead of unpacking and compiling the same tree twice."""
    import tarfile
    import threading

    from tflite_export.firmware import tflm as tflm_lib

    monkeypatch.setenv("TFLITE_EXPORT_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "src" / "tflite-micro"
    (tree / tflm_lib._MAKEFILE).parent.mkdir(parents=True)
    (tree / tflm_lib._MAKEFILE).write_text("# a stand-in tree\n")
    archive = tmp_path / "tflm.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="tflite-micro")
    found, entered = [], threading.Event()

    def second():
        entered.set()
        found.append(tflm_lib.tflm_root(archive))

    with tflm_lib._cache_lock():
        thread = threading.Thread(target=second)
        thread.start()
        assert entered.wait(60)
        thread.join(1.0)
        assert thread.is_alive() and not found   # waits while the lock is held
    thread.join(60)
    assert found == [tflm_lib.tflm_root(archive)]
    assert (found[0] / tflm_lib._MAKEFILE).read_text() == "# a stand-in tree\n"
    assert [p.name for p in found[0].parent.parent.iterdir()] == [found[0].parent.name]


def test_sources_that_preprocess_alike_are_compiled_once(tmp_path):
    """The object cache's second key is what the compiler sees: a source built
    with other preprocessor flags (the reference against the CMSIS-NN build's
    -DCMSIS_NN, another include folder) that preprocesses to the same text
    takes the first build's object; a define the source uses, or another
    optimisation level, compiles anew. Uses the host's C compiler."""
    import shutil

    from tflite_export.firmware import tflm as tflm_lib

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        _unavailable("no host C compiler (cc)")
    root = tmp_path / "tree"
    for folder, scale in (("a", 3), ("b", 3), ("c", 5)):
        (root / folder).mkdir(parents=True)
        (root / folder / "scale.h").write_text(f"#define SCALE {scale}\n")
    (root / "kernel.c").write_text(
        '#include "scale.h"\nint kernel(int x) {\n#ifdef FAST\n  return x << 1;\n#endif\n'
        "  return x * SCALE;\n}\n")
    objects = tmp_path / "objects"
    objects.mkdir()

    def build(name, *flags):
        return tflm_lib._compile_one(cc, ["-O2", *flags], root, "kernel.c", objects / name)

    assert build("first.o", "-Ia", "-DCMSIS_NN") == (None, True)
    assert build("first.o", "-Ia", "-DCMSIS_NN") == (None, False)      # the first key
    assert build("reference.o", "-Ib") == (None, False)                # same text
    assert (objects / "reference.o").read_bytes() == (objects / "first.o").read_bytes()
    assert build("other_header.o", "-Ic") == (None, True)              # SCALE 5
    assert build("fast.o", "-Ia", "-DFAST") == (None, True)            # the #ifdef
    assert build("size.o", "-Os", "-Ia") == (None, True)               # codegen flag
    error, compiled = build("broken.o", "-Imissing")
    assert compiled and "scale.h" in error and not (objects / "broken.o").exists()
