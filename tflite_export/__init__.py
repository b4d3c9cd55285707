"""tflite_export: the deploy-time stage (model in; .tflite, TFLite-Micro artifacts
and interpreter benchmarks out).

It never imports `keras_compress`: it must work on any Keras 3 model, a
SavedModel, or a TFMOT-made tf_keras model.

Not implemented yet: `convert`, `export_micro` and `benchmark` are tracked in
issue 5. Until then, convert a `keras_compress.strip(...)`-ed model with the
stock `tf.lite.TFLiteConverter`.
"""

__all__: list[str] = []
