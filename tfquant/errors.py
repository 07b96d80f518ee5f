"""Exceptions raised by tfquant. Every message says what went wrong, where, and what to do."""


class TfquantError(Exception):
    """Base class of every error tfquant raises on bad input."""


class ModelLoadError(TfquantError):
    """The model file is missing, corrupt, or not a Keras model."""


class UnsupportedLayerError(TfquantError):
    """The model has layers tfquant cannot convert. `layers` lists (name, type) pairs."""

    def __init__(self, layers, hint: str = ""):
        self.layers = list(layers)
        names = ", ".join(f"{name!r} ({kind})" for name, kind in self.layers)
        message = f"unsupported layer(s): {names}"
        super().__init__(message + (f"; {hint}" if hint else ""))


class UnreadableModelError(TfquantError):
    """The Keras frontend cannot walk the model's graph (a subclassed model, a layer reading a
    tensor from outside its model): it takes the lowered route instead."""


class CalibrationDataError(TfquantError):
    """Representative data is empty, has NaN/inf, or does not match the model's inputs."""


class ConversionError(TfquantError):
    """The graph cannot be expressed in the requested TFLite format."""
