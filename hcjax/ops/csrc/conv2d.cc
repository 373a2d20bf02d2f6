// CPU kernels of hcjax.ops.convolution, called through XLA's FFI: a stride-1 NHWC/HWIO 2-D
// convolution and its weight gradient, in float32.
//
// XLA:CPU computes a convolution's weight gradient as another convolution whose kernel is the
// output gradient (as large as the image): 4-7x slower than its forward pass at the DVF U-Net's
// 5x5 layers. Both kernels here are register-tiled outer products over a row of pixels, with
// the zero padding handled by clipping each kernel offset's pixel range instead of copying:
//   forward          out[b, y, x, o] = sum_{i, j, c} in[b, y + i - top, x + j - left, c]
//                                                    · w[i, j, c, o]
//   weight gradient  dw[i, j, c, o] = sum_{b, y, x} in[b, y + i - top, x + j - left, c]
//                                                    · g[b, y, x, o]
// (the input gradient is the forward pass of g with the kernel flipped and transposed; the
// Python side builds it). A work item is one output row; the weight gradient sums each
// contiguous chunk of rows (one per worker) into its own buffer and adds the buffers in chunk
// order, so that no result depends on thread timing. The tile loop is compiled for
// AVX-512, for AVX2+FMA and portably, and picked at run time.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HCJAX_X86 1
#include <immintrin.h>
#endif

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using hcjax::ParallelFor;

namespace {

// One register tile: for s < rows and every lane l of the nv vectors (the last one holding
// `tail` lanes),
//   c[s * ldc + l] += sum_{p < n} a[p * sa + s * ss] · b[p * sb + l].
// a is broadcast, b loaded as vectors; c is read at the start and written at the end, so that
// a caller accumulates over several calls.
struct TileArgs {
  int64_t n;
  const float* a;
  int64_t sa, ss;
  const float* b;
  int64_t sb;
  float* c;
  int64_t ldc, tail;
};

using TileFn = void (*)(const TileArgs&);

#define HCJAX_UNROLL _Pragma("GCC unroll 16")

// NAME<rows, vectors, masked>::Run, the tile loop over a vector type T (T::kLanes floats; Load,
// Store, Broadcast, Fma); ATTR carries the instruction set. kMasked: the last vector has fewer
// than kLanes lanes.
#define HCJAX_DEFINE_TILE(NAME, ATTR, T)                                               \
  template <int kRows, int kVectors, bool kMasked>                                     \
  struct NAME {                                                                        \
    ATTR static void Run(const TileArgs& t);                                           \
  };                                                                                   \
  template <int kRows, int kVectors, bool kMasked>                                     \
  ATTR void NAME<kRows, kVectors, kMasked>::Run(const TileArgs& t) {                   \
    using V = typename T::V;                                                           \
    const auto mask = T::Mask(kMasked ? t.tail : T::kLanes);                           \
    V acc[kRows][kVectors];                                                            \
    HCJAX_UNROLL for (int s = 0; s < kRows; ++s) {                                     \
      HCJAX_UNROLL for (int v = 0; v < kVectors; ++v) {                                \
        acc[s][v] = (kMasked && v == kVectors - 1)                                     \
                        ? T::LoadMasked(t.c + s * t.ldc + v * T::kLanes, mask)         \
                        : T::Load(t.c + s * t.ldc + v * T::kLanes);                    \
      }                                                                                \
    }                                                                                  \
    const float* a = t.a;                                                              \
    const float* b = t.b;                                                              \
    for (int64_t p = 0; p < t.n; ++p, a += t.sa, b += t.sb) {                          \
      V bv[kVectors];                                                                  \
      HCJAX_UNROLL for (int v = 0; v < kVectors; ++v) {                                \
        bv[v] = (kMasked && v == kVectors - 1) ? T::LoadMasked(b + v * T::kLanes, mask) \
                                               : T::Load(b + v * T::kLanes);           \
      }                                                                                \
      HCJAX_UNROLL for (int s = 0; s < kRows; ++s) {                                   \
        const V as = T::Broadcast(a[s * t.ss]);                                        \
        HCJAX_UNROLL for (int v = 0; v < kVectors; ++v) {                              \
          acc[s][v] = T::Fma(as, bv[v], acc[s][v]);                                    \
        }                                                                              \
      }                                                                                \
    }                                                                                  \
    HCJAX_UNROLL for (int s = 0; s < kRows; ++s) {                                     \
      HCJAX_UNROLL for (int v = 0; v < kVectors; ++v) {                                \
        if (kMasked && v == kVectors - 1) {                                            \
          T::StoreMasked(t.c + s * t.ldc + v * T::kLanes, acc[s][v], mask);            \
        } else {                                                                       \
          T::Store(t.c + s * t.ldc + v * T::kLanes, acc[s][v]);                        \
        }                                                                              \
      }                                                                                \
    }                                                                                  \
  }

// Portable: 4-lane vectors of the compiler's vector extension (SSE, NEON, ...).
struct Portable {
  typedef float V __attribute__((vector_size(16)));
  static constexpr int kLanes = 4, kRows = 4, kVectors = 2;
  static inline int64_t Mask(int64_t lanes) { return lanes; }
  static inline V Load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static inline V LoadMasked(const float* p, int64_t lanes) {
    V v = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t l = 0; l < lanes; ++l) v[l] = p[l];
    return v;
  }
  static inline void Store(float* p, V v) { std::memcpy(p, &v, sizeof(v)); }
  static inline void StoreMasked(float* p, V v, int64_t lanes) {
    for (int64_t l = 0; l < lanes; ++l) p[l] = v[l];
  }
  static inline V Broadcast(float x) { return V{x, x, x, x}; }
  static inline V Fma(V a, V b, V c) { return a * b + c; }
};
HCJAX_DEFINE_TILE(TilePortable, , Portable)

#ifdef HCJAX_X86
#define HCJAX_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline
struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8, kRows = 6, kVectors = 2;
  HCJAX_AVX2 __m256i Mask(int64_t lanes) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lanes)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  HCJAX_AVX2 V Load(const float* p) { return _mm256_loadu_ps(p); }
  HCJAX_AVX2 V LoadMasked(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
  HCJAX_AVX2 void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  HCJAX_AVX2 void StoreMasked(float* p, V v, __m256i m) { _mm256_maskstore_ps(p, m, v); }
  HCJAX_AVX2 V Broadcast(float x) { return _mm256_set1_ps(x); }
  HCJAX_AVX2 V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};
HCJAX_DEFINE_TILE(TileAvx2, __attribute__((target("avx2,fma"))), Avx2)

#define HCJAX_AVX512 __attribute__((target("avx512f"), always_inline)) static inline
struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16, kRows = 6, kVectors = 4;
  HCJAX_AVX512 __mmask16 Mask(int64_t lanes) {
    return static_cast<__mmask16>((1u << lanes) - 1u);
  }
  HCJAX_AVX512 V Load(const float* p) { return _mm512_loadu_ps(p); }
  HCJAX_AVX512 V LoadMasked(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  HCJAX_AVX512 void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  HCJAX_AVX512 void StoreMasked(float* p, V v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
  HCJAX_AVX512 V Broadcast(float x) { return _mm512_set1_ps(x); }
  HCJAX_AVX512 V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
};
HCJAX_DEFINE_TILE(TileAvx512, __attribute__((target("avx512f"))), Avx512)
#endif

// Every tile function of one instruction set: fn[rows - 1][vectors - 1][masked].
struct Tiles {
  int64_t lanes, rows, vectors;
  TileFn fn[6][4][2];

  // Calls the tile for `rows` rows (<= this->rows) and `vectors` vectors, the last with `tail`
  // lanes.
  void operator()(int64_t rows_, int64_t vectors_, const TileArgs& t) const {
    fn[rows_ - 1][vectors_ - 1][t.tail < lanes](t);
  }

  // Calls body(first, vectors, tail) for each block of up to lanes · vectors of `total`
  // channels: its first channel, its vectors and the lanes of the last one.
  template <typename Body>
  void ForBlocks(int64_t total, const Body& body) const {
    const int64_t block = lanes * vectors;
    for (int64_t first = 0; first < total; first += block) {
      const int64_t span = std::min(block, total - first);
      const int64_t count = (span + lanes - 1) / lanes;
      body(first, count, span - (count - 1) * lanes);
    }
  }
};

template <template <int, int, bool> class Tile, int kRow, int... kVector>
void FillRow(Tiles& tiles, std::integer_sequence<int, kVector...>) {
  ((tiles.fn[kRow][kVector][0] = &Tile<kRow + 1, kVector + 1, false>::Run,
    tiles.fn[kRow][kVector][1] = &Tile<kRow + 1, kVector + 1, true>::Run),
   ...);
}

template <class T, template <int, int, bool> class Tile, int... kRow>
void FillRows(Tiles& tiles, std::integer_sequence<int, kRow...>) {
  (FillRow<Tile, kRow>(tiles, std::make_integer_sequence<int, T::kVectors>()), ...);
}

template <class T, template <int, int, bool> class Tile>
Tiles MakeTiles() {
  Tiles tiles{T::kLanes, T::kRows, T::kVectors, {}};
  FillRows<T, Tile>(tiles, std::make_integer_sequence<int, T::kRows>());
  return tiles;
}

// The widest vectors this CPU has, at most those HCJAX_CPU_KERNELS_ISA names ("avx2" or
// "portable"; any other value is no cap; read once per process, for tests and comparisons).
const Tiles& BestTiles() {
  static const Tiles tiles = [] {
    const char* env = std::getenv("HCJAX_CPU_KERNELS_ISA");
    const std::string cap = env == nullptr ? "" : env;
    const bool avx512 = cap != "avx2" && cap != "portable", avx2 = cap != "portable";
#ifdef HCJAX_X86
    if (avx512 && __builtin_cpu_supports("avx512f")) return MakeTiles<Avx512, TileAvx512>();
    if (avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return MakeTiles<Avx2, TileAvx2>();
    }
#else
    (void)avx512, (void)avx2;
#endif
    return MakeTiles<Portable, TilePortable>();
  }();
  return tiles;
}

// The sizes of one convolution: input [batch, height, width, in], output
// [batch, out_height, out_width, out], kernel [kh, kw, in, out], offsets top and left.
struct Conv {
  int64_t batch, height, width, in, out_height, out_width, out, kh, kw, top, left;

  // Output columns [first, last) whose input column x + j - left lies inside the input.
  int64_t First(int64_t j) const { return std::max<int64_t>(0, left - j); }
  int64_t Last(int64_t j) const { return std::min<int64_t>(out_width, width + left - j); }
};

constexpr int64_t kChannelBlock = 128;  // input channels per forward tile call
constexpr int64_t kPartialBytes = int64_t{256} << 20;  // weight-gradient buffers, all workers

// One output row (b, y) of the forward pass: for each vector block of output channels, every
// kernel offset and block of input channels, tiles of up to `rows` output pixels.
void ForwardRow(const Conv& k, const Tiles& tiles, const float* x, const float* w, float* out,
                int64_t b, int64_t y) {
  float* row = out + (b * k.out_height + y) * k.out_width * k.out;
  std::fill(row, row + k.out_width * k.out, 0.0f);
  tiles.ForBlocks(k.out, [&](int64_t o0, int64_t vectors, int64_t tail) {
    for (int64_t i = 0; i < k.kh; ++i) {
      const int64_t yy = y + i - k.top;
      if (yy < 0 || yy >= k.height) continue;
      const float* in_row = x + (b * k.height + yy) * k.width * k.in;
      for (int64_t j = 0; j < k.kw; ++j) {
        const int64_t first = k.First(j), last = k.Last(j);
        for (int64_t c0 = 0; c0 < k.in; c0 += kChannelBlock) {
          const float* w_block = w + ((i * k.kw + j) * k.in + c0) * k.out + o0;
          for (int64_t x0 = first; x0 < last; x0 += tiles.rows) {
            const int64_t rows = std::min(tiles.rows, last - x0);
            tiles(rows, vectors,
                  {std::min(kChannelBlock, k.in - c0), in_row + (x0 + j - k.left) * k.in + c0, 1,
                   k.in, w_block, k.out, row + x0 * k.out + o0, k.out, tail});
          }
        }
      }
    }
  });
}

// One output-gradient row (b, y) of the weight gradient, added to acc [kh, kw, in, out]
// (by_in: acc is [kh, kw, out, in] and the vectors run over input channels).
void WeightGradientRow(const Conv& k, const Tiles& tiles, bool by_in, const float* x,
                       const float* g, float* acc, int64_t b, int64_t y) {
  const float* g_row = g + (b * k.out_height + y) * k.out_width * k.out;
  // The broadcast side (rows of a tile) and the vector side, per output pixel.
  const int64_t rows_total = by_in ? k.out : k.in, lanes_total = by_in ? k.in : k.out;
  for (int64_t i = 0; i < k.kh; ++i) {
    const int64_t yy = y + i - k.top;
    if (yy < 0 || yy >= k.height) continue;
    const float* in_row = x + (b * k.height + yy) * k.width * k.in;
    for (int64_t j = 0; j < k.kw; ++j) {
      const int64_t first = k.First(j), last = k.Last(j);
      if (first >= last) continue;
      const float* in_px = in_row + (first + j - k.left) * k.in;
      const float* g_px = g_row + first * k.out;
      const float* a = by_in ? g_px : in_px;
      const float* v = by_in ? in_px : g_px;
      const int64_t sa = by_in ? k.out : k.in, sv = by_in ? k.in : k.out;
      float* tile = acc + (i * k.kw + j) * k.in * k.out;
      tiles.ForBlocks(lanes_total, [&](int64_t l0, int64_t vectors, int64_t tail) {
        for (int64_t r0 = 0; r0 < rows_total; r0 += tiles.rows) {
          tiles(std::min(tiles.rows, rows_total - r0), vectors,
                {last - first, a + r0, sa, 1, v + l0, sv, tile + r0 * lanes_total + l0,
                 lanes_total, tail});
        }
      });
    }
  }
}

// Fraction of vector lanes doing work when `n` channels are split into vectors.
double LaneUse(int64_t n, int64_t lanes) {
  return static_cast<double>(n) / static_cast<double>(lanes * ((n + lanes - 1) / lanes));
}

ffi::Error Invalid(const char* message) { return ffi::Error::InvalidArgument(message); }

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                   int64_t top, int64_t left, ffi::ResultBuffer<ffi::F32> out) {
  const auto xs = x.dimensions(), ws = w.dimensions(), os = out->dimensions();
  if (xs.size() != 4 || ws.size() != 4 || os.size() != 4 || ws[2] != xs[3] ||
      os[0] != xs[0] || os[3] != ws[3] || top < 0 || left < 0) {
    return Invalid("conv2d: expected x [B, H, W, Ci], w [kh, kw, Ci, Co], out [B, Ho, Wo, Co] "
                   "and non-negative padding");
  }
  const Conv k{xs[0], xs[1], xs[2], xs[3], os[1], os[2], os[3], ws[0], ws[1], top, left};
  float* o = out->typed_data();
  if (k.in == 0 || k.kh == 0 || k.kw == 0) {
    std::fill(o, o + out->element_count(), 0.0f);
    return ffi::Error::Success();
  }
  const Tiles& tiles = BestTiles();
  ParallelFor(pool, k.batch * k.out_height, [&](int64_t, int64_t item) {
    ForwardRow(k, tiles, x.typed_data(), w.typed_data(), o, item / k.out_height,
               item % k.out_height);
  });
  return ffi::Error::Success();
}

ffi::Error WeightGradient(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                          ffi::Buffer<ffi::F32> g, int64_t top, int64_t left,
                          ffi::ResultBuffer<ffi::F32> dw) {
  const auto xs = x.dimensions(), gs = g.dimensions(), ds = dw->dimensions();
  if (xs.size() != 4 || gs.size() != 4 || ds.size() != 4 || gs[0] != xs[0] ||
      ds[2] != xs[3] || ds[3] != gs[3] || top < 0 || left < 0) {
    return Invalid("conv2d weight gradient: expected x [B, H, W, Ci], g [B, Ho, Wo, Co], "
                   "dw [kh, kw, Ci, Co] and non-negative padding");
  }
  const Conv k{xs[0], xs[1], xs[2], xs[3], gs[1], gs[2], gs[3], ds[0], ds[1], top, left};
  const int64_t size = k.kh * k.kw * k.in * k.out, items = k.batch * k.out_height;
  float* result = dw->typed_data();
  std::fill(result, result + size, 0.0f);
  if (size == 0 || items == 0 || k.out_width == 0) return ffi::Error::Success();
  const Tiles& tiles = BestTiles();
  const bool by_in = LaneUse(k.in, tiles.lanes) > LaneUse(k.out, tiles.lanes);
  // The rows are cut into one contiguous chunk per worker, each summed in order into its own
  // buffer (together at most kPartialBytes; XLA does not see them), and the buffers are added
  // in chunk order: the result depends on the shapes and the pool's size alone, not on which
  // thread ran what, so training is bitwise reproducible.
  const int64_t max_chunks =
      std::max<int64_t>(1, kPartialBytes / (size * static_cast<int64_t>(sizeof(float))));
  const int64_t chunks = hcjax::Workers(pool, items, max_chunks);
  std::vector<std::unique_ptr<float[]>> partial(chunks);
  ParallelFor(pool, chunks, [&](int64_t, int64_t chunk) {
    partial[chunk].reset(new float[size]());
    for (int64_t item = items * chunk / chunks; item < items * (chunk + 1) / chunks; ++item) {
      WeightGradientRow(k, tiles, by_in, x.typed_data(), g.typed_data(), partial[chunk].get(),
                        item / k.out_height, item % k.out_height);
    }
  });
  // result[i, j, c, o] = the workers' sum, transposed from [.., o, c] when by_in.
  const int64_t planes = k.kh * k.kw, plane = k.in * k.out;
  ParallelFor(pool, planes, [&](int64_t, int64_t q) {
    float* dst = result + q * plane;
    for (const auto& part : partial) {
      const float* src = part.get() + q * plane;
      if (!by_in) {
        for (int64_t e = 0; e < plane; ++e) dst[e] += src[e];
      } else {
        for (int64_t o = 0; o < k.out; ++o) {
          for (int64_t c = 0; c < k.in; ++c) dst[c * k.out + o] += src[o * k.in + c];
        }
      }
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(HcjaxConv2dForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x [B, H, W, Ci]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w [kh, kw, Ci, Co]
                                  .Attr<int64_t>("top")
                                  .Attr<int64_t>("left")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // out [B, Ho, Wo, Co]

XLA_FFI_DEFINE_HANDLER_SYMBOL(HcjaxConv2dWeightGradient, WeightGradient,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x [B, H, W, Ci]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // g [B, Ho, Wo, Co]
                                  .Attr<int64_t>("top")
                                  .Attr<int64_t>("left")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dw [kh, kw, Ci, Co]
