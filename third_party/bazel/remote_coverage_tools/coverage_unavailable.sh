#!/bin/sh
# Stub for the coverage tools Bazel would download (see BUILD next to this file).
echo "bazel coverage is not available in this offline setup (third_party/bazel/remote_coverage_tools is a stub)" >&2
exit 1
