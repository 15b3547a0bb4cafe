// CUDA kernel of the spectral mode mixing (csrc/include/dtwin/mix.h): a small complex matrix
// product per retained mode. Float accumulation for float/half/bfloat16 inputs.
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

// One thread per retained mode m = (m1, m2) (adjacent threads read adjacent modes: coalesced in
// every layout that keeps m2 innermost) and a tile of kTileB batch rows x kTileN output indices:
// each loaded input value serves kTileN products and each weight value kTileB. grid.y tiles the
// output index n, grid.z the batch.
constexpr int kTileB = 4;
constexpr int kTileN = 4;

template <class T, class TW, class TO, class Acc>
__global__ void __launch_bounds__(kThreads) mix_kernel(const MixArgs a) {
  const mix::Shape& s = a.shape;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= s.M1 * s.M2) return;
  const int64_t m1 = m / s.M2, m2 = m % s.M2;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kTileN;
  const int nn = static_cast<int>(s.N - n0 < kTileN ? s.N - n0 : kTileN);
  const T* in = static_cast<const T*>(a.in) + m1 * a.in_s.m1 + m2 * a.in_s.m2;
  const TW* w = static_cast<const TW*>(a.w) + m1 * a.w_s.m1 + m2 * a.w_s.m2 + n0 * a.w_s.j;
  TO* out = static_cast<TO*>(a.out) + m1 * a.out_s.m1 + m2 * a.out_s.m2 + n0 * a.out_s.j;
  const Acc sign_in = a.conj_in ? Acc(-1) : Acc(1);
  const Acc sign_w = a.conj_w ? Acc(-1) : Acc(1);
  for (int64_t b0 = static_cast<int64_t>(blockIdx.z) * kTileB; b0 < s.batch; b0 += int64_t(gridDim.z) * kTileB) {
    const int nb = static_cast<int>(s.batch - b0 < kTileB ? s.batch - b0 : kTileB);
    Acc re[kTileB][kTileN], im[kTileB][kTileN];
#pragma unroll
    for (int t = 0; t < kTileB; ++t)
#pragma unroll
      for (int u = 0; u < kTileN; ++u) re[t][u] = im[t][u] = Acc(0);
    for (int64_t j = 0; j < s.J; ++j) {
      Acc x_re[kTileB], x_im[kTileB], w_re[kTileN], w_im[kTileN];
#pragma unroll
      for (int t = 0; t < kTileB; ++t) {
        const T* x = in + (b0 + (t < nb ? t : 0)) * a.in_s.b + j * a.in_s.j;
        x_re[t] = to_acc<Acc>(x[0]);
        x_im[t] = sign_in * to_acc<Acc>(x[a.in_s.c]);
      }
#pragma unroll
      for (int u = 0; u < kTileN; ++u) {
        const TW* e = w + j * a.w_s.b + (u < nn ? u : 0) * a.w_s.j;
        w_re[u] = to_acc<Acc>(e[0]);
        w_im[u] = sign_w * to_acc<Acc>(e[a.w_s.c]);
      }
#pragma unroll
      for (int t = 0; t < kTileB; ++t)
#pragma unroll
        for (int u = 0; u < kTileN; ++u) mix::complex_mac(re[t][u], im[t][u], x_re[t], x_im[t], w_re[u], w_im[u]);
    }
#pragma unroll
    for (int t = 0; t < kTileB; ++t) {
      if (t >= nb) break;
#pragma unroll
      for (int u = 0; u < kTileN; ++u) {
        if (u >= nn) break;
        TO* o = out + (b0 + t) * a.out_s.b + u * a.out_s.j;
        o[0] = from_acc<TO>(re[t][u]);
        o[a.out_s.c] = from_acc<TO>(im[t][u]);
      }
    }
  }
}

template <class T, class TW, class TO, class Acc>
cudaError_t launch(const MixArgs& a, cudaStream_t stream) {
  const mix::Shape& s = a.shape;
  const int64_t modes = s.M1 * s.M2;
  if (modes == 0 || s.batch == 0 || s.N == 0) return cudaSuccess;
  const int64_t n_tiles = (s.N + kTileN - 1) / kTileN, b_tiles = (s.batch + kTileB - 1) / kTileB;
  if (n_tiles > 65535) return cudaErrorInvalidConfiguration;
  // a block's 128 threads cover up to 128 modes; few modes (1D) leave lanes idle, so fewer threads
  const int threads = modes >= kThreads ? kThreads : static_cast<int>((modes + 31) / 32 * 32);
  const dim3 grid(static_cast<unsigned>((modes + threads - 1) / threads), static_cast<unsigned>(n_tiles),
                  static_cast<unsigned>(b_tiles < 65535 ? b_tiles : 65535));
  mix_kernel<T, TW, TO, Acc><<<grid, threads, 0, stream>>>(a);
  return cudaGetLastError();
}

// float16/bfloat16 inputs: the weight and the output each in the input's dtype or in float32
template <class T>
cudaError_t launch_reduced(const MixArgs& a, cudaStream_t stream) {
  const bool w_float = a.w_dtype == MixDtype::kFloat, out_float = a.out_dtype == MixDtype::kFloat;
  if (w_float) return out_float ? launch<T, float, float, float>(a, stream) : launch<T, float, T, float>(a, stream);
  return out_float ? launch<T, T, float, float>(a, stream) : launch<T, T, T, float>(a, stream);
}

}  // namespace

cudaError_t mix_launch(const MixArgs& a, cudaStream_t stream) {
  switch (a.dtype) {
    case MixDtype::kDouble:
      return launch<double, double, double, double>(a, stream);
    case MixDtype::kHalf:
      return launch_reduced<__half>(a, stream);
    case MixDtype::kBFloat16:
      return launch_reduced<__nv_bfloat16>(a, stream);
    default:
      return launch<float, float, float, float>(a, stream);
  }
}

}  // namespace cuda
}  // namespace dtwin
