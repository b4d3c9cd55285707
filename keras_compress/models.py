"""Reference architectures of the compression literature, as Keras 3 models.

These are the models the published tables use (Han et al., Deep Compression;
TFMOT's examples), so benchmarks and tests compare like with like. Shapes are
static apart from the batch (Reshape instead of Flatten), which keeps the
TFLite graphs free of shape arithmetic.

Example:

```python
from keras_compress import models

model = models.lenet_300_100()
model.count_params()   # 266610
```
"""

from __future__ import annotations

import keras
import keras as _keras

__all__ = ["lenet_300_100", "lenet5"]


def lenet_300_100(
    input_shape: tuple[int, ...] = (28, 28), num_classes: int = 10, keras_module=None
) -> keras.Model:
    """LeNet-300-100 (LeCun et al. 1998): two hidden Dense layers, 266,610
    parameters for 28x28 inputs. Outputs logits.

    `keras_module` builds the same model with another Keras (the benchmarks pass
    `tf_keras` to give TFMOT the identical architecture)."""
    keras = keras_module or _keras
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if len(input_shape) > 1:
        size = 1
        for d in input_shape:
            size *= d
        x = keras.layers.Reshape((size,), name="flatten")(x)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet_300_100")


def lenet5(
    input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10, keras_module=None
) -> keras.Model:
    """LeNet-5 as in Caffe and Deep Compression: conv 20@5x5, pool, conv 50@5x5,
    pool, Dense 500, Dense 10 (431,080 parameters for 28x28x1). Outputs logits."""
    keras = keras_module or _keras
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(20, 5, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(50, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    h, w = x.shape[1], x.shape[2]
    x = keras.layers.Reshape((h * w * 50,), name="flatten")(x)
    x = keras.layers.Dense(500, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet5")
