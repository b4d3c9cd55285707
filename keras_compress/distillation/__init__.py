"""Teacher-student distillation on top of `keras.distillation`."""

from keras_compress.distillation.callback import DistillationCallback
from keras_compress.distillation.distiller import Distiller

__all__ = ["DistillationCallback", "Distiller"]
