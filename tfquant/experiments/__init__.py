"""Measuring tfquant, apart from the pipeline: the peers run side by side (TFLiteConverter,
tfmot, AI Edge Quantizer), the DSP delegate's profiling and cost model, and the tables, metrics
and plots the experiment tools (tfquant-ptq-grid, tfquant-qat-compare, tfquant-paper-tables,
tfquant-benchmark, ...) share. Nothing in the conversion pipeline imports this package."""
