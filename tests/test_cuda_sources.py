"""Every CUDA source compiles: the .cu files with nvcc for sm_80 and sm_90 (they include no torch
header), the CUDA bindings with the host compiler against torch's and CUDA's headers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc")


def _cuda_include() -> Path | None:
    if NVCC is None:
        return None
    candidates = [
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        str(Path(NVCC).resolve().parent.parent),
        "/usr/local/cuda",
    ]
    for base in filter(None, candidates):
        include = Path(base) / "include"
        if (include / "cuda_runtime_api.h").is_file():
            return include
    return None


def test_there_are_cuda_sources():
    assert CUDA_SOURCES, "csrc/cuda holds no .cu file"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: p.name)
def test_cu_compiles_with_nvcc(source, tmp_path):
    # torch's own nvcc flags (they remove the implicit half/bfloat16 conversions, for one)
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS

    cmd = [
        NVCC,
        "-c",
        str(source),
        "-o",
        str(tmp_path / (source.stem + ".o")),
        "-std=c++17",
        "-O1",
        "--expt-relaxed-constexpr",
        f"-I{ROOT / 'csrc' / 'include'}",
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90,code=sm_90",
        "-Werror=all-warnings",
        *COMMON_NVCC_FLAGS,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"


@pytest.mark.skipif(
    _cuda_include() is None, reason="CUDA headers (from an nvcc install) are not on this machine"
)
def test_cuda_bindings_compile(tmp_path):
    """bindings.cpp is built only with a CUDA torch; here it is at least compiled (syntax and
    types) against the same headers."""
    from torch.utils.cpp_extension import include_paths

    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    includes = [f"-I{p}" for p in include_paths()] + [
        f"-I{_cuda_include()}",
        f"-I{ROOT / 'csrc' / 'include'}",
        f"-I{sysconfig.get_paths()['include']}",
    ]
    if not any((Path(p) / "c10/cuda/impl/cuda_cmake_macros.h").is_file() for p in include_paths()):
        # a CPU build of torch ships c10/cuda's headers but not this CMake-generated one
        shim = tmp_path / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        shim.parent.mkdir(parents=True)
        shim.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        includes.append(f"-I{tmp_path}")
    cmd = [
        cxx,
        "-std=c++20",
        "-fsyntax-only",
        "-DDTWIN_WITH_CUDA=1",
        *includes,
        str(ROOT / "csrc/cuda/bindings.cpp"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
