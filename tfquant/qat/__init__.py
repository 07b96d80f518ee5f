"""Quantization-aware training (paper section 3.2): fake quantization with a straight-through
estimator, and the paper's batch-norm folding for training."""
