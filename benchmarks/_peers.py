"""The TFMOT peer rows, each run in a tf_keras subprocess (importing TFMOT
switches the whole process to tf_keras), and why TFLite-Micro refuses an
artifact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

def in_subprocess(module: str, setup: dict, float_weights, **extra) -> dict:
    """Run TFMOT peer `module` (in a tf_keras subprocess) on the float weights;
    returns the JSON it printed last. `extra` goes into its config, whose
    temporary folder is `extra`'s `{tmp}` placeholder."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "float.npz", **{f"w{i}": w for i, w in enumerate(float_weights)})
        peer_config = {**setup, "weights": str(Path(tmp) / "float.npz"),
                       **{k: v.format(tmp=tmp) for k, v in extra.items()}}
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep
               + os.environ.get("PYTHONPATH", "")}
        done = subprocess.run([sys.executable, "-m", module, json.dumps(peer_config)],
                              capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"{module} failed: {done.stderr[-2000:]}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if "output" in extra:  # read the artifact before the folder goes
            answer["tflite_bytes"] = Path(peer_config["output"]).read_bytes()
        return answer

def run_peer(setup: dict, float_weights):
    """TFMOT's row from the peer subprocess: (its int8 TFLiteModel, the JSON
    it printed)."""
    import tflite_export

    peer = in_subprocess("benchmarks._tfmot_suite_peer", setup, float_weights,
                 output="{tmp}/tfmot.tflite")
    return tflite_export.TFLiteModel(peer.pop("tflite_bytes")), peer

def peer_step_times(setup: dict, float_weights) -> dict[str, float]:
    """TFMOT's step times measured now, in the timing peer subprocess: for a
    TFMOT row whose training (and the timing done with it) came from the
    cache."""
    return in_subprocess("benchmarks._tfmot_timing_peer", setup, float_weights)

def micro_refusal(tfl) -> str:
    """Why TFLite-Micro does not run `tfl`, in one line."""
    from tflite_export import micro_run

    try:
        micro_run.check_micro_compatible(tfl)
    except (ValueError, RuntimeError) as exc:
        return str(exc).splitlines()[0]
    floats = sorted({op for op, _ in tfl.float_ops})
    return "allocation or invocation failed" + (
        f"; it computes in float ({', '.join(floats)})" if floats else "")
