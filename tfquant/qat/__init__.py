"""Quantization-aware training (paper section 3.2).

  qat_model = tfquant.qat.quantize_model(float_model)          # fake quant + BN folding
  qat_model.compile(...); qat_model.fit(..., callbacks=[
      tfquant.qat.QuantizationScheduler(quant_delay=0, freeze_bn_delay=N)])
  int8_bytes = tfquant.convert(qat_model)                      # learned ranges, no calibration
"""

from tfquant.qat.activation_quantizer import ActivationQuantizer
from tfquant.qat.batch_norm_folding import FoldedBatchNorm
from tfquant.qat.callbacks import QuantizationScheduler
from tfquant.qat.constant_operand import ConstantOperand
from tfquant.qat.embedding import QuantizedEmbedding
from tfquant.qat.int8_metrics import Int8Metrics
from tfquant.qat.rewrite import QatRecipe, float_layers, quantize_model
from tfquant.qat.simulation import calibrate_activation_ranges, simulate_ptq
from tfquant.qat.training import fine_tune

__all__ = ["ActivationQuantizer", "ConstantOperand", "FoldedBatchNorm", "Int8Metrics", "QatRecipe",
           "QuantizedEmbedding",
           "QuantizationScheduler", "calibrate_activation_ranges", "fine_tune", "float_layers",
           "quantize_model", "simulate_ptq"]
