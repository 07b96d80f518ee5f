#!/usr/bin/env bash
# CI: build the C++ delegate and run its C++ tests with Bazel, offline.
#
# Uses Debian's bazel-bootstrap (Bazel 4.2.3), installing it with apt-get if no Bazel is on the
# machine. WORKSPACE points every repository Bazel 4.2.3 would download at a local stand-in under
# third_party/bazel/, and .bazelrc disables downloads, so this needs no network after apt-get.
#
# Environment:
#   BAZEL                 Bazel binary to use (default: bazel-4 if present, else bazel)
#   TFQUANT_BAZEL_ROOT    Bazel's output_user_root (default: /tmp/tfquant-bazel-<uid>), so the
#                         run does not depend on (or fill) ~/.cache/bazel
#   BAZEL_TARGETS         what to test (default: //delegates/...)
# Extra arguments are passed to `bazel test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${BAZEL:-}" ]] && ! command -v bazel-4 >/dev/null 2>&1 && ! command -v bazel >/dev/null 2>&1; then
    echo "bazel not found: installing Debian's bazel-bootstrap" >&2
    sudo=""
    if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq bazel-bootstrap >/dev/null
fi
# Prefer the versioned binary: /usr/bin/bazel is a wrapper that picks the newest installed Bazel.
BAZEL="${BAZEL:-$(command -v bazel-4 || command -v bazel)}"

root="${TFQUANT_BAZEL_ROOT:-/tmp/tfquant-bazel-$(id -u)}"
mkdir -p "$root"

# --nohome_rc: ignore ~/.bazelrc. --max_idle_secs: don't leave a Bazel server (a JVM) running for
# hours after CI is done.
startup=(--output_user_root="$root" --nohome_rc --max_idle_secs=600)
# shellcheck disable=SC2086
"$BAZEL" "${startup[@]}" test ${BAZEL_TARGETS:-//delegates/...} \
    --test_output=errors --curses=no --color=no "$@"
