// CPU kernels of hcjax.ops.sampling.bilinear_sample's gradient, called through XLA's FFI.
//
// XLA:CPU runs a scatter-add as a serial loop over updates with per-element index arithmetic;
// the image gradient of bilinear sampling (four scatter-adds of C floats per output pixel) is
// where the pure-XLA op spent most of its backward pass. These kernels compute what the XLA
// formulation in sampling.py computes, in one pass over the output pixels each, work spread
// over XLA's intra-op thread pool:
//   forward   padded image [..., Hp, Wp, C], coords [..., h, w, 2] -> out, dx, dy [..., h, w, C]
//             (dx, dy: d out / d x and d out / d y per channel, zero where torch cuts them;
//             the backward pass then never reads the image again);
//   backward  coords, dx, dy, cotangent -> d padded image [..., Hp, Wp, C], d coords.
// The image is the *padded* one the XLA path gathers from (sampling._pad_image), so both paths
// share the clamping rules below.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using hcjax::ParallelFor;

namespace {

// One axis of a coordinate, as sampling._axis: the first corner (capped so that both corners
// fit in the padded image), the fraction towards the second corner, and whether torch passes a
// gradient to the coordinate. NaN reads corner 0 and keeps the NaN in its fraction.
struct Axis {
  int64_t start;
  float fraction;
  bool ok;
};

XLA_FFI_ATTRIBUTE_ALWAYS_INLINE inline Axis Locate(float v, int64_t size, int64_t padded,
                                                    bool zeros) {
  const float lo = zeros ? -1.0f : 0.0f;
  const float hi = zeros ? static_cast<float>(size) : static_cast<float>(size - 1);
  const bool ok = zeros ? (v >= lo && v < hi) : (v > lo && v < hi);
  v = v < lo ? lo : (v > hi ? hi : v);  // comparisons with NaN are false: NaN stays
  if (zeros) v += 1.0f;
  // floor(v) without a libm call (v is clamped, so the conversion cannot overflow), capped in
  // integers: float(padded - 2) could round up past the last pair of pixels.
  int64_t start = 0;
  if (v == v) {
    start = static_cast<int64_t>(v);
    if (static_cast<float>(start) > v) start -= 1;
  }
  start = std::min(start, padded - 2);
  float fraction = v - static_cast<float>(start);
  fraction = fraction < 0.0f ? 0.0f : (fraction > 1.0f ? 1.0f : fraction);
  return {start, fraction, ok};
}

// Sizes shared by both kernels: an image (or its gradient) [..., Hp, Wp, C] and coordinates
// [..., h, w, 2] whose leading axes (the batch, and any vmapped ones) agree.
struct Geometry {
  int64_t batch, hp, wp, channels, points;
};

ffi::ErrorOr<Geometry> Shapes(ffi::Span<const int64_t> image, ffi::Span<const int64_t> coords) {
  if (image.size() < 4 || coords.size() != image.size() || coords.back() != 2) {
    return ffi::Unexpected(ffi::Error::InvalidArgument(
        "bilinear_sample: image must be [..., H, W, C] and coords [..., h, w, 2]"));
  }
  const size_t rank = image.size();
  Geometry g{1, image[rank - 3], image[rank - 2], image[rank - 1],
             coords[rank - 3] * coords[rank - 2]};
  for (size_t k = 0; k + 3 < rank; ++k) {
    if (image[k] != coords[k]) {
      return ffi::Unexpected(
          ffi::Error::InvalidArgument("bilinear_sample: image and coords batch axes differ"));
    }
    g.batch *= image[k];
  }
  if (g.hp < 2 || g.wp < 2) {
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("bilinear_sample: the padded image needs H, W >= 2"));
  }
  return g;
}

// Per-pixel loops over output pixels [first, last). The channel count is a template argument
// (0: known only at run time) so that the common 1-4 channels unroll; restrict tells the
// compiler that outputs do not alias inputs.
struct Range {
  int64_t first, last, channels, hp, wp, height, width;
  bool zeros;
};

template <int kChannels>
XLA_FFI_ATTRIBUTE_ALWAYS_INLINE inline void ForwardRange(
    const Range& r, const float* __restrict plane, const float* __restrict xy,
    float* __restrict out, float* __restrict dx, float* __restrict dy) {
  const int64_t c = kChannels > 0 ? kChannels : r.channels, row = r.wp * c;
  for (int64_t n = r.first; n < r.last; ++n) {
    const Axis ax = Locate(xy[2 * n], r.width, r.wp, r.zeros);
    const Axis ay = Locate(xy[2 * n + 1], r.height, r.hp, r.zeros);
    const float* p = plane + ay.start * row + ax.start * c;
    const float fx = ax.fraction, fy = ay.fraction;
    for (int64_t k = 0; k < c; ++k) {
      const float v00 = p[k], v01 = p[c + k], v10 = p[row + k], v11 = p[row + c + k];
      const float top = v01 - v00, bottom = v11 - v10;
      const float upper = v00 + fx * top, lower = v10 + fx * bottom;
      out[n * c + k] = upper + fy * (lower - upper);
      dx[n * c + k] = ax.ok ? top + fy * (bottom - top) : 0.0f;
      dy[n * c + k] = ay.ok ? lower - upper : 0.0f;
    }
  }
}

template <int kChannels>
XLA_FFI_ATTRIBUTE_ALWAYS_INLINE inline void BackwardRange(
    const Range& r, const float* __restrict xy, const float* __restrict dx,
    const float* __restrict dy, const float* __restrict cot, float* __restrict d_plane,
    float* __restrict d_xy) {
  const int64_t c = kChannels > 0 ? kChannels : r.channels, row = r.wp * c;
  for (int64_t n = r.first; n < r.last; ++n) {
    const Axis ax = Locate(xy[2 * n], r.width, r.wp, r.zeros);
    const Axis ay = Locate(xy[2 * n + 1], r.height, r.hp, r.zeros);
    float* d = d_plane + ay.start * row + ax.start * c;
    const float* t = cot + n * c;
    const float fx = ax.fraction, fy = ay.fraction;
    const float w00 = (1.0f - fy) * (1.0f - fx), w01 = (1.0f - fy) * fx;
    const float w10 = fy * (1.0f - fx), w11 = fy * fx;
    float sx = 0.0f, sy = 0.0f;
    for (int64_t k = 0; k < c; ++k) {
      sx += dx[n * c + k] * t[k];
      sy += dy[n * c + k] * t[k];
      d[k] += w00 * t[k];
      d[c + k] += w01 * t[k];
      d[row + k] += w10 * t[k];
      d[row + c + k] += w11 * t[k];
    }
    d_xy[2 * n] = sx;
    d_xy[2 * n + 1] = sy;
  }
}

// Each loop is compiled twice, for the baseline instruction set and (on x86-64) for AVX2+FMA,
// and picked at run time: the second is about a quarter faster.
#define HCJAX_FORWARD_ARGS                                                                 \
  const Range &r, const float *__restrict plane, const float *__restrict xy,              \
      float *__restrict out, float *__restrict dx, float *__restrict dy
#define HCJAX_FORWARD_CALL ForwardRange<kChannels>(r, plane, xy, out, dx, dy)
#define HCJAX_BACKWARD_ARGS                                                                \
  const Range &r, const float *__restrict xy, const float *__restrict dx,                 \
      const float *__restrict dy, const float *__restrict cot, float *__restrict d_plane, \
      float *__restrict d_xy
#define HCJAX_BACKWARD_CALL BackwardRange<kChannels>(r, xy, dx, dy, cot, d_plane, d_xy)

template <int kChannels>
void ForwardBaseline(HCJAX_FORWARD_ARGS) { HCJAX_FORWARD_CALL; }
template <int kChannels>
void BackwardBaseline(HCJAX_BACKWARD_ARGS) { HCJAX_BACKWARD_CALL; }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
template <int kChannels>
__attribute__((target("avx2,fma"))) void ForwardFma(HCJAX_FORWARD_ARGS) { HCJAX_FORWARD_CALL; }
template <int kChannels>
__attribute__((target("avx2,fma"))) void BackwardFma(HCJAX_BACKWARD_ARGS) { HCJAX_BACKWARD_CALL; }

bool HasFma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

template <int kChannels>
auto ForwardFor() { return HasFma() ? &ForwardFma<kChannels> : &ForwardBaseline<kChannels>; }
template <int kChannels>
auto BackwardFor() { return HasFma() ? &BackwardFma<kChannels> : &BackwardBaseline<kChannels>; }
#else
template <int kChannels>
auto ForwardFor() { return &ForwardBaseline<kChannels>; }
template <int kChannels>
auto BackwardFor() { return &BackwardBaseline<kChannels>; }
#endif

// Calls f(std::integral_constant<int, C>) with C = channels for 1-4, else 0.
template <typename F>
void ByChannels(int64_t channels, const F& f) {
  switch (channels) {
    case 1: return f(std::integral_constant<int, 1>());
    case 2: return f(std::integral_constant<int, 2>());
    case 3: return f(std::integral_constant<int, 3>());
    case 4: return f(std::integral_constant<int, 4>());
    default: return f(std::integral_constant<int, 0>());
  }
}

constexpr int64_t kPixelsPerItem = 4096;  // output pixels per forward work item

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> image,
                   ffi::Buffer<ffi::F32> coords, int64_t height, int64_t width, int64_t zeros,
                   ffi::ResultBuffer<ffi::F32> out, ffi::ResultBuffer<ffi::F32> dx,
                   ffi::ResultBuffer<ffi::F32> dy) {
  auto shapes = Shapes(image.dimensions(), coords.dimensions());
  if (shapes.has_error()) return shapes.error();
  const Geometry g = shapes.value();
  const int64_t per_batch = (g.points + kPixelsPerItem - 1) / kPixelsPerItem;
  ByChannels(g.channels, [&](auto kc) {
    const auto loop = ForwardFor<decltype(kc)::value>();
    ParallelFor(pool, g.batch * per_batch, [&](int64_t, int64_t item) {
      const int64_t b = item / per_batch, first = b * g.points + (item % per_batch) *
                                                  kPixelsPerItem;
      const Range r{first, std::min((b + 1) * g.points, first + kPixelsPerItem), g.channels,
                    g.hp, g.wp, height, width, zeros != 0};
      loop(r, image.typed_data() + b * g.hp * g.wp * g.channels, coords.typed_data(),
           out->typed_data(), dx->typed_data(), dy->typed_data());
    });
  });
  return ffi::Error::Success();
}

// One work item per batch element: its scatter-adds land in its own plane of d image, so
// items never collide.
ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> coords, ffi::Buffer<ffi::F32> dx,
                    ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> cotangent, int64_t height,
                    int64_t width, int64_t zeros, ffi::ResultBuffer<ffi::F32> d_image,
                    ffi::ResultBuffer<ffi::F32> d_coords) {
  auto shapes = Shapes(d_image->dimensions(), coords.dimensions());
  if (shapes.has_error()) return shapes.error();
  const Geometry g = shapes.value();
  const int64_t plane = g.hp * g.wp * g.channels;
  float* d = d_image->typed_data();
  ByChannels(g.channels, [&](auto kc) {
    const auto loop = BackwardFor<decltype(kc)::value>();
    ParallelFor(pool, g.batch, [&](int64_t, int64_t b) {
      std::fill(d + b * plane, d + (b + 1) * plane, 0.0f);
      const Range r{b * g.points, (b + 1) * g.points, g.channels, g.hp, g.wp, height, width,
                    zeros != 0};
      loop(r, coords.typed_data(), dx.typed_data(), dy.typed_data(), cotangent.typed_data(),
           d + b * plane, d_coords->typed_data());
    });
  });
  return ffi::Error::Success();
}

}  // namespace

#ifndef HCJAX_JAXLIB_VERSION
#define HCJAX_JAXLIB_VERSION "unknown"
#endif

// The jaxlib whose FFI headers this library was compiled against (setup.py defines it): an
// older jaxlib at run time may not understand its handlers.
extern "C" const char* HcjaxBuiltWithJaxlib() { return HCJAX_JAXLIB_VERSION; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(HcjaxBilinearSampleForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // padded image
                                  .Arg<ffi::Buffer<ffi::F32>>()  // coords
                                  .Attr<int64_t>("height")
                                  .Attr<int64_t>("width")
                                  .Attr<int64_t>("zeros")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // out
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dx
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dy

XLA_FFI_DEFINE_HANDLER_SYMBOL(HcjaxBilinearSampleBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // coords
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dx
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cotangent
                                  .Attr<int64_t>("height")
                                  .Attr<int64_t>("width")
                                  .Attr<int64_t>("zeros")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // d padded image
                                  .Ret<ffi::Buffer<ffi::F32>>());  // d coords
