"""keras-compress: make Keras 3 models small and fast for phones and microcontrollers.

Training-time compression that runs inside an ordinary `model.fit`:

```python
import keras_compress as kc

pruned = kc.prune(model, schedule=kc.PolynomialDecay(0.0, 0.9, 0, 2000))
pruned.compile(...)
pruned.fit(x, y, epochs=5, callbacks=[kc.PruningCallback()])
plain = kc.strip(pruned)
```

TFMOT users: `prune_low_magnitude`, `UpdatePruningStep`, `strip_pruning` and
`quantize_model` are aliases of `prune`, `PruningCallback`, `strip` and
`quantize`, with the same argument names.
"""

import os as _os

# Keras 3 on TensorFlow is the supported stack; respect an explicit user choice.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from keras_compress import (  # noqa: E402
    datasets, graph, lowrank, models, registry, schedules, sequence_models, steps)
from keras_compress.clustering import ClusterWrapper, cluster  # noqa: E402
from keras_compress.distillation import DistillationCallback, Distiller  # noqa: E402
from keras_compress.lowrank import factorize  # noqa: E402
from keras_compress.pruning import (  # noqa: E402
    LayerSparsity,
    PruningCallback,
    PruningWrapper,
    SparsityReport,
    prune,
    sparsity,
)
from keras_compress.quantization import (  # noqa: E402
    ActivationQuantizer,
    FakeQuant,
    QuantizationCallback,
    QuantizedKernel,
    QuantizeWrapper,
    quantize,
)
from keras_compress.schedules import (  # noqa: E402
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
    Schedule,
)
from keras_compress.recipe import recipe  # noqa: E402
from keras_compress.registry import KernelLayout, register_layer  # noqa: E402
from keras_compress.strip import strip  # noqa: E402
from keras_compress.deploy import deploy  # noqa: E402
from keras_compress.shrink import shrink  # noqa: E402
from keras_compress.profile import profile  # noqa: E402
from keras_compress.batchnorm import recalibrate_batchnorm  # noqa: E402

# TFMOT names, so `tfmot.sparsity.keras.X` becomes `keras_compress.X`.
prune_low_magnitude = prune
UpdatePruningStep = PruningCallback
strip_pruning = strip
quantize_model = quantize

__all__ = [
    "ActivationQuantizer",
    "FakeQuant",
    "QuantizationCallback",
    "QuantizedKernel",
    "QuantizeWrapper",
    "quantize",
    "quantize_model",
    "deploy",
    "recipe",
    "recalibrate_batchnorm",
    "shrink",
    "profile",
    "ClusterWrapper",
    "KernelLayout",
    "ConstantSparsity",
    "DistillationCallback",
    "Distiller",
    "LayerSparsity",
    "PolynomialDecay",
    "PruningCallback",
    "PruningSchedule",
    "PruningWrapper",
    "Schedule",
    "SparsityReport",
    "UpdatePruningStep",
    "__version__",
    "cluster",
    "datasets",
    "lowrank",
    "factorize",
    "graph",
    "register_layer",
    "registry",
    "models",
    "sequence_models",
    "prune",
    "prune_low_magnitude",
    "schedules",
    "steps",
    "sparsity",
    "strip",
    "strip_pruning",
]
