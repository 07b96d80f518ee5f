"""Builds the package's two shared libraries: the DSP delegate (delegates/tfquant_dsp) and
tfquant's native helpers (tfquant/native: the calibration's range search).

Everything else about the package is in setup.cfg. Both are plain shared objects loaded with
dlopen (by the TFLite runtimes, and by ctypes), not Python extensions; they are compiled here
with the C++ compiler setuptools finds (g++ by default) at `pip install .` and at
`pip install -e .`.
"""

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
DELEGATE = Path("delegates") / "tfquant_dsp"
LIBRARY_SOURCES = sorted(str(p) for sub in ("isa", "kernels", "delegate")
                         for p in (DELEGATE / sub).glob("*.cc"))
CXXFLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden",
            "-fvisibility-inlines-hidden", "-Wall", "-Wl,--exclude-libs,ALL", "-Wl,-z,defs"]
DELEGATE_FLAGS = [f"-I{ROOT / DELEGATE}",
                  f"-Wl,--version-script={ROOT / DELEGATE / 'exports.map'}"]
# The native helpers reproduce numpy's float64 arithmetic bit for bit: no fused multiply-adds.
NATIVE_FLAGS = ["-ffp-contract=off"]


class BuildDelegate(build_ext):
    """Compiles each Extension with one compiler call (no Python headers needed)."""

    def build_extension(self, ext):
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        cxx = shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "g++")
        if Path(cxx[0]).name.startswith(("gcc", "cc")):  # the C driver cannot link libstdc++
            cxx = ["g++"]
        command = [*cxx, *CXXFLAGS, *ext.extra_compile_args,
                   *(str(ROOT / s) for s in ext.sources), "-o", str(target)]
        print(" ".join(command))
        subprocess.run(command, check=True)


setup(
    ext_modules=[Extension("tfquant._tfquant_dsp", sources=LIBRARY_SOURCES,
                           extra_compile_args=DELEGATE_FLAGS),
                 Extension("tfquant.native._range_search",
                           sources=["tfquant/native/range_search.cc"],
                           extra_compile_args=NATIVE_FLAGS)],
    cmdclass={"build_ext": BuildDelegate},
)
