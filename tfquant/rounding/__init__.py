"""Choosing weight codes from calibration data (Recipe.weight_rounding): the inputs'
statistics (statistics), GPTQ-style error compensation (gptq) and AdaRound-style learned
rounding (adaround). The pass that applies them is tfquant.passes.weight_rounding."""
