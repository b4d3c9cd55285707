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

__all__ = ["lenet_300_100", "lenet5", "resnet8", "ds_cnn"]


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


def resnet8(
    input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10, keras_module=None
) -> keras.Model:
    """ResNet-8 in the shape of the MLPerf Tiny image-classification reference
    (CIFAR-10): a 16-filter stem and three residual stacks of 16, 32 and 64
    filters (Conv+BN+ReLU, Conv+BN, Add, ReLU; a strided 1x1 convolution on the
    shortcut where the width changes), 8x8 average pooling and a Dense head
    (78,666 parameters). Outputs logits; L2 weight decay 1e-4 on the kernels as
    in the reference."""
    keras = keras_module or _keras
    layers = keras.layers
    l2 = keras.regularizers.L2(1e-4)

    def conv(filters, kernel, strides, name):
        return layers.Conv2D(filters, kernel, strides=strides, padding="same",
                             kernel_initializer="he_normal", kernel_regularizer=l2, name=name)

    inputs = keras.Input(input_shape, name="image")
    x = conv(16, 3, 1, "stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stack, (filters, strides) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        y = conv(filters, 3, strides, f"s{stack}_conv1")(x)
        y = layers.BatchNormalization(name=f"s{stack}_bn1")(y)
        y = layers.ReLU(name=f"s{stack}_relu1")(y)
        y = conv(filters, 3, 1, f"s{stack}_conv2")(y)
        y = layers.BatchNormalization(name=f"s{stack}_bn2")(y)
        if strides != 1:
            x = conv(filters, 1, strides, f"s{stack}_shortcut")(x)
        x = layers.Add(name=f"s{stack}_add")([x, y])
        x = layers.ReLU(name=f"s{stack}_relu")(x)
    x = layers.AveragePooling2D(pool_size=x.shape[1], name="pool")(x)
    x = layers.Reshape((x.shape[-1],), name="flatten")(x)
    outputs = layers.Dense(num_classes, kernel_regularizer=l2, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet8")


def ds_cnn(
    input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10, keras_module=None
) -> keras.Model:
    """A depthwise-separable (MobileNet-style) CNN for CIFAR-10: a 3x3 stem and
    four blocks of DepthwiseConv+BN+ReLU then 1x1 Conv+BN+ReLU (64, 128, 128,
    256 filters; the second and fourth stride 2), global average pooling and a
    Dense head. Outputs logits. BatchNormalization momentum is 0.9: with Keras'
    0.99 the moving variances still carry their initial 1.0 after a few hundred
    steps, and a short run predicted a single class at inference
    (docs/status.md has the measurement)."""
    keras = keras_module or _keras
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block, (filters, strides) in enumerate(((64, 1), (128, 2), (128, 1), (256, 2)), start=1):
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                   name=f"b{block}_dw")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"b{block}_dw_bn")(x)
        x = layers.ReLU(name=f"b{block}_dw_relu")(x)
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"b{block}_pw")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"b{block}_pw_bn")(x)
        x = layers.ReLU(name=f"b{block}_pw_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="ds_cnn")
