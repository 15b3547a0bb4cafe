// Build facts of the CUDA part of dtwin._C.
#include "launch.h"

#define DTWIN_STRINGIFY(...) #__VA_ARGS__
#define DTWIN_EXPAND_STRINGIFY(...) DTWIN_STRINGIFY(__VA_ARGS__)

namespace dtwin {
namespace cuda {

const char* arch_list() {
#ifdef __CUDA_ARCH_LIST__
  return DTWIN_EXPAND_STRINGIFY(__CUDA_ARCH_LIST__);
#else
  return "unknown";
#endif
}

}  // namespace cuda
}  // namespace dtwin
