"""tfquant: quantization for TensorFlow / Keras and TFLite, after Krishnamoorthi (2018).

Public API:
  convert(model, representative_data, recipe) -> TFLite flatbuffer bytes
  convert_model(...) -> ConversionResult (bytes plus the graphs and ranges behind them)
  Recipe: what to produce (float, int8, weights_only; per-channel; I/O types; calibration)
  load_keras_model(path), save_atomically(bytes, path)
"""

import importlib.util as _importlib_util

# tflite-runtime 2.14 breaks ("vector::reserve") when it is loaded after TensorFlow in the same
# process, because TensorFlow's libraries export the same symbols. Loading it first keeps all
# three runtimes usable side by side; see tfquant.runtime.
if _importlib_util.find_spec("tflite_runtime") is not None:
    import tflite_runtime.interpreter as _tflite_runtime_interpreter  # noqa: F401

from tfquant.converter import (ConversionResult, convert, convert_model, load_keras_model,
                             save_atomically)
from tfquant.errors import (CalibrationDataError, ConversionError, ModelLoadError,
                            TfquantError, UnsupportedLayerError)
from tfquant.recipe import Recipe

__version__ = "0.1.0"

__all__ = [
    "CalibrationDataError", "ConversionError", "ConversionResult", "ModelLoadError", "Recipe",
    "TfquantError", "UnsupportedLayerError", "convert", "convert_model", "load_keras_model",
    "save_atomically",
]
