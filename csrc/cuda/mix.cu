// CUDA kernel of the spectral mode mixing (csrc/include/dtwin/mix.h): one thread per
// output index n, a block row per (mode, batch slice); the input value of (b, j, mode) is the same
// for the whole block. Float accumulation for float/half/bfloat16 inputs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "launch.h"

namespace dtwin {
namespace cuda {

namespace {

constexpr int kThreads = 128;

// Explicit conversions: torch builds extensions with __CUDA_NO_HALF_CONVERSIONS__ and
// __CUDA_NO_BFLOAT16_CONVERSIONS__, which remove the implicit ones.
template <class Acc, class T>
__device__ __forceinline__ Acc to_acc(T v) {
  return static_cast<Acc>(v);
}
template <>
__device__ __forceinline__ float to_acc<float, __half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_acc<float, __nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <class T, class Acc>
__device__ __forceinline__ T from_acc(Acc v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_acc<__half, float>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

template <class T, class TW, class Acc>
__global__ void __launch_bounds__(kThreads) mix_kernel(const MixArgs a) {
  const mix::Shape& s = a.shape;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= s.N) return;
  const int64_t m = blockIdx.z;
  const int64_t m1 = m / s.M2, m2 = m % s.M2;
  const T* in = static_cast<const T*>(a.in);
  T* out = static_cast<T*>(a.out);
  const TW* w = static_cast<const TW*>(a.w) + m1 * a.w_s.m1 + m2 * a.w_s.m2 + n * a.w_s.j;
  const Acc sign_in = a.conj_in ? Acc(-1) : Acc(1);
  const Acc sign_w = a.conj_w ? Acc(-1) : Acc(1);
  for (int64_t b = blockIdx.y; b < s.batch; b += gridDim.y) {
    const T* x = in + b * a.in_s.b + m1 * a.in_s.m1 + m2 * a.in_s.m2;
    Acc acc_re = Acc(0), acc_im = Acc(0);
    for (int64_t j = 0; j < s.J; ++j) {
      const Acc x_re = to_acc<Acc>(x[j * a.in_s.j]);
      const Acc x_im = sign_in * to_acc<Acc>(x[j * a.in_s.j + a.in_s.c]);
      const TW* e = w + j * a.w_s.b;
      mix::complex_mac(acc_re, acc_im, x_re, x_im, to_acc<Acc>(e[0]), sign_w * to_acc<Acc>(e[a.w_s.c]));
    }
    T* o = out + b * a.out_s.b + m1 * a.out_s.m1 + m2 * a.out_s.m2 + n * a.out_s.j;
    o[0] = from_acc<T>(acc_re);
    o[a.out_s.c] = from_acc<T>(acc_im);
  }
}

template <class T, class TW, class Acc>
cudaError_t launch(const MixArgs& a, cudaStream_t stream) {
  const mix::Shape& s = a.shape;
  const int64_t modes = s.M1 * s.M2;
  if (modes == 0 || s.batch == 0 || s.N == 0) return cudaSuccess;
  if (modes > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>((s.N + kThreads - 1) / kThreads),
                  static_cast<unsigned>(s.batch < 65535 ? s.batch : 65535), static_cast<unsigned>(modes));
  mix_kernel<T, TW, Acc><<<grid, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_reduced(const MixArgs& a, cudaStream_t stream) {
  return a.w_dtype == MixDtype::kFloat ? launch<T, float, float>(a, stream) : launch<T, T, float>(a, stream);
}

}  // namespace

cudaError_t mix_launch(const MixArgs& a, cudaStream_t stream) {
  switch (a.dtype) {
    case MixDtype::kDouble:
      return launch<double, double, double>(a, stream);
    case MixDtype::kHalf:
      return launch_reduced<__half>(a, stream);
    case MixDtype::kBFloat16:
      return launch_reduced<__nv_bfloat16>(a, stream);
    default:
      return launch<float, float, float>(a, stream);
  }
}

}  // namespace cuda
}  // namespace dtwin
