"""Builds dtwin._C: the C++ CPU kernels always, the CUDA kernels when torch has CUDA and nvcc
is found. Environment:

- ``DTWIN_CUDA=0|1``: force the CUDA build off or on (on fails if it cannot be built).
- ``DTWIN_CPU_ARCH``: the ``-march`` of the CPU kernels; ``native`` (default) tunes for the
  build machine, ``none`` leaves the compiler default (portable binaries, no SIMD beyond SSE2).
- ``MAX_JOBS``: parallel compile jobs (ninja).

Build against the torch you run with: ``pip install -e . --no-build-isolation``.
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    import torch

    flag = os.environ.get("DTWIN_CUDA")
    has_nvcc = CUDA_HOME is not None or shutil.which("nvcc") is not None
    possible = torch.version.cuda is not None and has_nvcc
    if flag == "0":
        return False
    if flag == "1":
        if not possible:
            raise RuntimeError(
                "DTWIN_CUDA=1 but CUDA cannot be built: "
                f"torch.version.cuda={torch.version.cuda}, nvcc found={has_nvcc}"
            )
        return True
    return possible


def _cpu_arch_flags() -> list[str]:
    arch = os.environ.get("DTWIN_CPU_ARCH", "native")
    return [] if arch == "none" else [f"-march={arch}"]


def _extension():
    cuda = _want_cuda()
    sources = ["csrc/ops.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    cxx = ["-O3", "-fopenmp", "-DNDEBUG", *_cpu_arch_flags()]
    kwargs = dict(
        name="dtwin._C",
        include_dirs=[os.path.join(ROOT, "csrc", "include")],
        extra_link_args=["-fopenmp"],
    )
    if not cuda:
        return CppExtension(sources=sources, extra_compile_args={"cxx": cxx}, **kwargs)
    sources += [*sorted(glob.glob("csrc/cuda/*.cu")), "csrc/cuda/bindings.cpp"]
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-DNDEBUG", "-lineinfo"]
    return CUDAExtension(
        sources=sources,
        define_macros=[("DTWIN_WITH_CUDA", "1")],
        extra_compile_args={"cxx": [*cxx, "-DDTWIN_WITH_CUDA=1"], "nvcc": nvcc},
        **kwargs,
    )


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
