// The SIMD instruction set that the CPU kernels were compiled for (reported by `dtwin info`).
#include "simd.h"

#include "../build_info.h"

namespace dtwin {
namespace cpu {
const char* simd_name() { return DTWIN_SIMD_NAME; }
}  // namespace cpu
}  // namespace dtwin
