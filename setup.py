"""Builds the DSP delegate's shared library (delegates/tfquant_dsp) into the package.

Everything else about the package is in setup.cfg. The library is a plain shared object loaded
with dlopen by the TFLite runtimes (not a Python extension); it is compiled here with the C++
compiler setuptools finds (g++ by default) at `pip install .` and at `pip install -e .`.
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
            "-fvisibility-inlines-hidden", "-Wall", "-Wl,--exclude-libs,ALL", "-Wl,-z,defs",
            f"-Wl,--version-script={ROOT / DELEGATE / 'exports.map'}"]


class BuildDelegate(build_ext):
    """Compiles each delegate Extension with one compiler call (no Python headers needed)."""

    def build_extension(self, ext):
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        cxx = shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "g++")
        if Path(cxx[0]).name.startswith(("gcc", "cc")):  # the C driver cannot link libstdc++
            cxx = ["g++"]
        command = [*cxx, *CXXFLAGS, f"-I{ROOT / DELEGATE}",
                   *(str(ROOT / s) for s in ext.sources), "-o", str(target)]
        print(" ".join(command))
        subprocess.run(command, check=True)


setup(
    ext_modules=[Extension("tfquant._tfquant_dsp", sources=LIBRARY_SOURCES)],
    cmdclass={"build_ext": BuildDelegate},
)
