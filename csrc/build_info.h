// What a build of dtwin._C contains: its CPU instruction set, OpenMP, CUDA architectures.
#pragma once

#include <string>

namespace dtwin {
namespace cpu {
const char* simd_name();  // csrc/cpu/simd_info.cpp
}
#ifdef DTWIN_WITH_CUDA
namespace cuda {
const char* arch_list();  // csrc/cuda/bindings.cpp
}
#endif

inline std::string build_info() {
  std::string s = "{\"cpu\": true, \"cpu_simd\": \"";
  s += cpu::simd_name();
  s += "\", \"openmp\": ";
#ifdef _OPENMP
  s += "true";
#else
  s += "false";
#endif
  s += ", \"cuda\": ";
#ifdef DTWIN_WITH_CUDA
  s += "true, \"cuda_archs\": \"";
  s += cuda::arch_list();
  s += "\"";
#else
  s += "false, \"cuda_archs\": \"\"";
#endif
  s += ", \"compiler\": \"";
#if defined(__clang__)
  s += "clang " __clang_version__;
#elif defined(__GNUC__)
  s += "gcc " __VERSION__;
#else
  s += "unknown";
#endif
  s += "\"}";
  return s;
}

}  // namespace dtwin
