"""No behaviour change: every conversion of golden_cases.py writes the bytes recorded in
tests/golden/hashes.json (recorded before the registry / typed-IR refactor, at commit
779f394 plus the calibration_kernels option).

A case whose input TensorFlow computed differently on this machine (its fingerprint differs
from the recording's) is skipped with that reason: the recording says nothing about other
inputs. To re-record after an intended change: `python tests/golden_cases.py`, and list the
cases that changed and why in the commit message.
"""

import json

import pytest

import golden_cases

with open(golden_cases.GOLDEN_FILE) as _f:
    RECORDED = json.load(_f)["cases"]

_SOURCES = {}
# Sources whose conversions take most of this file's time (TFLiteConverter runs, big or
# reference-calibrated networks): `make test` runs them, `make test-fast` does not.
SLOW_SOURCES = {"mobilenet_v1", "mobilenet_v2", "app_ResNet50", "app_MobileNetV2",
                "tflite_MobileNetV2", "tflite_MobileNetV3Small",
                "qat_mobilenet_v2_4bit_per_layer"}


def _source(name):
    if name not in _SOURCES:
        _SOURCES[name] = golden_cases.build_source(name)
    return _SOURCES[name]


def test_every_case_is_recorded():
    names = {golden_cases.case_name(s, r) for s, r, _ in golden_cases.CASES}
    assert names == set(RECORDED)


@pytest.mark.parametrize("source_name,recipe_name,extra", [
    pytest.param(s, r, e, id=golden_cases.case_name(s, r),
                 marks=[pytest.mark.slow] if s in SLOW_SOURCES else [])
    for s, r, e in golden_cases.CASES])
def test_same_bytes(source_name, recipe_name, extra):
    recorded = RECORDED[golden_cases.case_name(source_name, recipe_name)]
    source = _source(source_name)
    if source.fingerprint != recorded["fingerprint"]:
        pytest.skip("TensorFlow computed this case's input differently on this machine "
                    f"(fingerprint {str(source.fingerprint)[:12]}, recorded "
                    f"{str(recorded['fingerprint'])[:12]})")
    data = golden_cases.convert(source, recipe_name, extra)
    assert (golden_cases.sha256(data), len(data)) == (recorded["sha256"], recorded["bytes"])
