"""Shared fixtures. tfquant is imported first: it loads tflite-runtime before TensorFlow so
that all three runtimes work in one process (see tfquant/__init__.py)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfquant  # noqa: E402,F401  (must precede tensorflow)
