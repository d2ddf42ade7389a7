// binary_conv2d for one ISA (binary_conv2d.cpp, _avx2.cpp, _avx512.cpp): x is read once into
// a bit image (per image and group, per pixel: the channel signs in 64-bit words), the weight
// into sign lines over (tap, channel word); then an implicit popcount GEMM per (image, group)
// on the shared core (rows = output channels, columns = output pixels whose patches are
// gathered from the bit image while B is packed: no im2col buffer). Padded taps read +1
// (zero bits); zero padding subtracts, per output pixel class, the weight sums of its padded
// taps. Traffic: x once, out once, the bit image (1/32 of float32 x) once per column panel.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "binary/binary_conv2d.h"
#include "binary/popcount_gemm_core_impl.h"
#include "binary/sign_words_impl.h"
#include "common/half_scalar.h"
#include "common/parallel.h"

namespace kernelkit {
namespace KK_ISA {
namespace binary_conv2d_detail {

using namespace popcount_gemm;
using namespace sign_words;

// thread_buffer / Scratch slots (distinct from the ones other kernels keep).
constexpr int kSlotCore = 50, kSlotBits = 51;

template <class TO> using ComputeOf = std::conditional_t<std::is_same_v<TO, double>, double, float>;

// Sizes derived from the arguments.
struct Geometry {
  int64_t Cg, Og, taps, cw;  // cw: 64-bit channel words per pixel (and per tap of a weight)
  int64_t P;                 // output pixels OH * OW
  int64_t line() const { return taps * cw * 2; }  // int32 words of one weight line
  explicit Geometry(const BinaryConv2dArgs& g)
      : Cg(g.C / g.groups), Og(g.O / g.groups), taps(g.KH * g.KW), cw(ceil_div(Cg, 64)),
        P(g.OH * g.OW) {}
};

// ---- the B operand: output pixels' patches gathered from the bit image ----

// img: one (image, group)'s bits, (H * W + 1, cw) 64-bit words (channel words of a pixel
// contiguous; the extra pixel is zero). Column p of B is output pixel p; its k-word
// k = tap * cw + c is channel word c of the input pixel under tap, or of the zero pixel (+1
// signs) where the tap reads padding. Per tap, each column's source pixel is found once, then
// the sliver is written k-word by k-word (contiguous stores; the reads hit a bit image of
// H * W * C / 8 bytes, in L1 for the usual layer sizes).
struct PatchB {
  const uint64_t* img;
  int64_t H, W, OW, cw, KW, sh, sw, ph, pw, dh, dw;
  void pack(int64_t kw0, int64_t kwc, int64_t j0, int64_t cols, uint64_t* out) const {
    int64_t ih0[NR], iw0[NR], off[NR];
    for (int64_t j = 0; j < NR; ++j) {
      const int64_t p = j0 + std::min(j, cols - 1);
      ih0[j] = p / OW * sh - ph;
      iw0[j] = p % OW * sw - pw;
    }
    const int64_t zero = H * W * cw;
    int64_t tap = kw0 / cw, c = kw0 % cw;
    for (int64_t k = 0; k < kwc; ++tap, c = 0) {
      const int64_t dy = tap / KW * dh, dx = tap % KW * dw;
      for (int64_t j = 0; j < NR; ++j) {
        const int64_t ih = ih0[j] + dy, iw = iw0[j] + dx;
        const bool inside = j < cols && ih >= 0 && ih < H && iw >= 0 && iw < W;
        off[j] = inside ? (ih * W + iw) * cw : zero;
      }
      const int64_t n = std::min(cw - c, kwc - k);
      for (int64_t q = 0; q < n; ++q, ++k) {
        uint64_t* dst = out + k * NR;
        for (int64_t j = 0; j < NR; ++j) dst[j] = img[off[j] + c + q];
      }
    }
  }
};

// ---- zero padding: the padded taps' weight sums per output pixel class ----

// Output pixels whose windows have the same padded taps share a class: the class of pixel p
// is row_class[oh] * col_classes + col_class[ow] (the padded taps of a row depend on oh
// only, those of a column on ow only). Class 0 of rows and columns is "no tap padded" when
// such a row / column exists.
struct PadClasses {
  std::vector<int32_t> pixel_class;           // (P,)
  std::vector<std::vector<char>> rows, cols;  // per row / column class: valid[dy] / valid[dx]
  std::vector<int32_t> padded, first;         // class c's padded taps: padded[first[c] ..
                                              // first[c + 1])
  std::vector<int32_t> border;                // pixels with a padded tap, ascending
  int64_t count() const { return int64_t(rows.size() * cols.size()); }
};

inline std::vector<int32_t> classify(int64_t outs, int64_t in, int64_t k, int64_t s, int64_t pad,
                                     int64_t d, std::vector<std::vector<char>>& classes) {
  std::vector<int32_t> cls(size_t(outs), 0);
  for (int64_t o = 0; o < outs; ++o) {
    std::vector<char> valid(static_cast<size_t>(k));
    for (int64_t t = 0; t < k; ++t) {
      const int64_t i = o * s - pad + t * d;
      valid[size_t(t)] = i >= 0 && i < in;
    }
    size_t c = 0;
    while (c < classes.size() && classes[c] != valid) ++c;
    if (c == classes.size()) classes.push_back(valid);
    cls[size_t(o)] = int32_t(c);
  }
  return cls;
}

inline PadClasses pad_classes(const BinaryConv2dArgs& g) {
  PadClasses pc;
  const std::vector<int32_t> r = classify(g.OH, g.H, g.KH, g.stride_h, g.pad_h, g.dil_h, pc.rows);
  const std::vector<int32_t> c = classify(g.OW, g.W, g.KW, g.stride_w, g.pad_w, g.dil_w, pc.cols);
  pc.pixel_class.resize(size_t(g.OH * g.OW));
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow)
      pc.pixel_class[size_t(oh * g.OW + ow)] =
          r[size_t(oh)] * int32_t(pc.cols.size()) + c[size_t(ow)];
  for (int64_t k = 0; k < pc.count(); ++k) {
    pc.first.push_back(int32_t(pc.padded.size()));
    const std::vector<char>& vr = pc.rows[size_t(k) / pc.cols.size()];
    const std::vector<char>& vc = pc.cols[size_t(k) % pc.cols.size()];
    for (int64_t t = 0; t < g.KH * g.KW; ++t)
      if (!(vr[size_t(t / g.KW)] && vc[size_t(t % g.KW)])) pc.padded.push_back(int32_t(t));
  }
  pc.first.push_back(int32_t(pc.padded.size()));
  for (int64_t p = 0; p < g.OH * g.OW; ++p) {
    const int32_t c = pc.pixel_class[size_t(p)];
    if (pc.first[size_t(c) + 1] > pc.first[size_t(c)]) pc.border.push_back(int32_t(p));
  }
  return pc;
}

// ---- the epilogue ----

// out[o, p] = (taps * Cg - 2 count - corr[o, class(p)]) * scale[o] + bias[o], one fma in S;
// corr is nonzero only on the border pixels (a few of a layer's), subtracted from those alone.
template <class TO> struct ConvEpilogue {
  using S = ComputeOf<TO>;
  TO* out;  // this entry's (Og, P) block
  int64_t P;
  int32_t K;
  const int32_t* corr;  // corr[class * corr_stride + o], or null (no padded taps counted)
  int64_t corr_stride;
  const int32_t* pixel_class;
  const int32_t* border;  // border pixels, ascending: border[0 .. borders)
  int64_t borders;
  const S* scale;
  int64_t scale_stride;
  const S* bias;
  int64_t bias_stride;

  // rows <= MR, cols <= NR (one register tile).
  void store(const int32_t* counts, int64_t ldc, int64_t i0, int64_t j0, int64_t rows,
             int64_t cols) const {
    int32_t dot[MR][NR];
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) dot[i][j] = K - 2 * counts[i * ldc + j];
    if (corr) {
      // The border pixels of columns [j0, j0 + cols): their classes' corrections, the tile's
      // rows contiguous.
      const int32_t* q = std::lower_bound(border, border + borders, int32_t(j0));
      for (; q < border + borders && *q < j0 + cols; ++q) {
        const int32_t* c = corr + pixel_class[*q] * corr_stride + i0;
        for (int64_t i = 0; i < rows; ++i) dot[i][*q - j0] -= c[i];
      }
    }
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t o = i0 + i;
      const S s = scale[o * scale_stride], b = bias[o * bias_stride];
      TO* dst = out + o * P + j0;
      for (int64_t j = 0; j < cols; ++j)
        dst[j] = StoreAs<TO>::from(std::fma(S(dot[i][j]), s, b));
    }
  }
};

// ---- the operands ----

// Work items of the x pass: planes (image, group[, row]) of pixel lines, in chunks of kChunk
// lines. A plane is all H * W pixels when they are evenly strided, else one row.
constexpr int64_t kChunk = 64;

struct XPass {
  bool whole;  // planes of H * W lines
  int64_t planes, lines, chunks;
  int64_t items() const { return planes * chunks; }
};

inline XPass x_pass(const BinaryConv2dArgs& g) {
  XPass xp;
  xp.whole = g.H == 1 || g.x_strides[2] == g.W * g.x_strides[3];
  xp.lines = xp.whole ? g.H * g.W : g.W;
  xp.planes = g.N * g.groups * (xp.whole ? 1 : g.H);
  xp.chunks = ceil_div(xp.lines, kChunk);
  return xp;
}

// Items [i0, i1) of the x pass into img ((N, groups, H * W + 1, cw) 64-bit words; the last
// pixel of each image is the zero pixel, cleared by the caller). Returns NaN seen.
template <class T>
bool binarize_x(const BinaryConv2dArgs& g, const Geometry& ge, const XPass& xp, int64_t i0,
                int64_t i1, uint64_t* img) {
  bool nan = false;
  const T* x = static_cast<const T*>(g.x);
  const int64_t rows = xp.whole ? 1 : g.H;
  int32_t* bits = reinterpret_cast<int32_t*>(img);
  const bool odd = ceil_div(ge.Cg, 32) % 2 != 0;  // the last 64-bit word's high half: zero
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t plane = item / xp.chunks, chunk = item % xp.chunks;
    const int64_t h = plane % rows, ng = plane / rows, grp = ng % g.groups, n = ng / g.groups;
    const FloatLines<T> lines{x + n * g.x_strides[0] + grp * ge.Cg * g.x_strides[1] +
                                  h * g.x_strides[2],
                              g.x_strides[3], g.x_strides[1], ge.Cg};
    int32_t* dst = bits + (ng * (g.H * g.W + 1) + h * g.W) * ge.cw * 2;
    const int64_t l0 = chunk * kChunk, l1 = std::min(xp.lines, l0 + kChunk);
    nan |= binarize_lines(lines, l0, l1, dst, ge.cw * 2, 1);
    if (odd)
      for (int64_t l = l0; l < l1; ++l) dst[l * ge.cw * 2 + ge.cw * 2 - 1] = 0;
  }
  return nan;
}

// Output channels [o0, o1) of the weight into sign lines wbits (O, taps, cw) 64-bit words
// and their sums wsum (taps, O) = sum over channels of sign(w). Returns NaN seen.
template <class T>
bool binarize_weight(const BinaryConv2dArgs& g, const Geometry& ge, int64_t o0, int64_t o1,
                     uint64_t* wbits, int32_t* wsum) {
  bool nan = false;
  int32_t* bits = reinterpret_cast<int32_t*>(wbits);
  const int64_t words = ceil_div(ge.Cg, 32), stride = ge.cw * 2;
  for (int64_t o = o0; o < o1; ++o) {
    int32_t* line = bits + o * ge.line();
    if constexpr (std::is_same_v<T, int32_t>) {
      // Packed words: copied, the tail's padding bits cleared (the kernel relies on them).
      const int32_t* w = static_cast<const int32_t*>(g.weight) + o * g.w_strides[0];
      const uint32_t tail = ge.Cg % 32 ? (uint32_t(1) << (ge.Cg % 32)) - 1 : ~uint32_t(0);
      // Word-major: the taps of a word are contiguous in pack_signs' (O, words, kh, kw), one
      // strided run when kh and kw merge.
      const bool merged = g.w_strides[2] == g.KW * g.w_strides[3];
      for (int64_t q = 0; q < words; ++q) {
        const int32_t* wq = w + q * g.w_strides[1];
        const uint32_t mask = q == words - 1 ? tail : ~uint32_t(0);
        if (merged) {
          const int64_t ts = g.w_strides[3];
          for (int64_t t = 0; t < ge.taps; ++t)
            line[t * stride + q] = int32_t(uint32_t(wq[t * ts]) & mask);
        } else {
          for (int64_t dy = 0, t = 0; dy < g.KH; ++dy)
            for (int64_t dx = 0; dx < g.KW; ++dx, ++t)
              line[t * stride + q] =
                  int32_t(uint32_t(wq[dy * g.w_strides[2] + dx * g.w_strides[3]]) & mask);
        }
      }
    } else {
      const T* w = static_cast<const T*>(g.weight) + o * g.w_strides[0];
      for (int64_t dy = 0; dy < g.KH; ++dy) {
        const FloatLines<T> lines{w + dy * g.w_strides[2], g.w_strides[3], g.w_strides[1],
                                  ge.Cg};
        nan |= binarize_lines(lines, 0, g.KW, line + dy * g.KW * stride, stride, 1);
      }
    }
    for (int64_t t = 0; t < ge.taps; ++t) {
      if (words % 2) line[t * stride + stride - 1] = 0;
      const uint64_t* lw = wbits + o * ge.taps * ge.cw + t * ge.cw;
      int64_t neg = 0;
      for (int64_t q = 0; q < ge.cw; ++q) neg += popcount_word(lw[q]);
      wsum[t * g.O + o] = int32_t(ge.Cg - 2 * neg);
    }
  }
  return nan;
}

// corr[class * O + o] = sum over the class's padded taps of wsum[tap * O + o], for o in
// [o0, o1): contiguous runs of output channels (vectorized).
inline void pad_corrections(const PadClasses& pc, const int32_t* wsum, int64_t O, int64_t o0,
                            int64_t o1, int32_t* corr) {
  for (int64_t c = 0; c < pc.count(); ++c) {
    int32_t* dst = corr + c * O;
    std::fill(dst + o0, dst + o1, 0);
    for (int32_t q = pc.first[size_t(c)]; q < pc.first[size_t(c) + 1]; ++q) {
      const int32_t* ws = wsum + pc.padded[size_t(q)] * O;
      for (int64_t o = o0; o < o1; ++o) dst[o] += ws[o];
    }
  }
}

// ---- one call ----

template <class TO> void run_typed(const BinaryConv2dArgs& g) {
  using S = ComputeOf<TO>;
  const Geometry ge(g);
  const Plan plan{ge.Og, ge.P, ge.taps * ge.cw * 64};
  const int64_t entries = g.N * g.groups;
  const int64_t work = g.N * g.O * ge.P * std::max<int64_t>(1, ge.taps * ge.cw);
#if defined(_OPENMP)
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(g.threads, work / 65536 + 1)));
#else
  const int threads = 1;
#endif
  const bool split_entries = entries < threads;
  const int share = split_entries ? threads : 1;
  const Split sp = split(plan, share);
  const Blocking bl = blocking(plan, sp);
  const int64_t per_thread = round_up(bl.words() + 8, 8);

  // Zero padding needs corrections only when some window reaches into the padding.
  PadClasses pc;
  bool correct = false;
  if (!g.pad_plus1 && (g.pad_h > 0 || g.pad_w > 0)) {
    pc = pad_classes(g);
    for (const auto& r : pc.rows) correct |= std::find(r.begin(), r.end(), 0) != r.end();
    for (const auto& c : pc.cols) correct |= std::find(c.begin(), c.end(), 0) != c.end();
  }
  // All scratch before the parallel region: bit image, weight lines, sums, corrections, then
  // the per-thread core blocks.
  const int64_t pixels = g.H * g.W + 1;  // and the zero pixel
  const int64_t img_words = entries * pixels * ge.cw, w_words = g.O * ge.taps * ge.cw;
  const int64_t sum_words = ceil_div(g.O * ge.taps, 2);
  const int64_t corr_words = correct ? ceil_div(g.O * pc.count(), 2) : 0;
  Scratch<uint64_t, kSlotBits> bits_scratch;
  uint64_t* img = bits_scratch.get(img_words + w_words + sum_words + corr_words + 1);
  uint64_t* wbits = img + img_words;
  int32_t* wsum = reinterpret_cast<int32_t*>(wbits + w_words);
  int32_t* corr = reinterpret_cast<int32_t*>(wbits + w_words + sum_words);
  for (int64_t e = 0; e < entries; ++e)
    std::fill_n(img + (e * pixels + g.H * g.W) * ge.cw, ge.cw, uint64_t(0));
  Scratch<uint64_t, kSlotCore> core_scratch;
  uint64_t* scratch = core_scratch.get(per_thread * threads);

  static const S zero = 0;
  const S scale_value = S(g.scale_value);
  const S* scale = g.scale ? static_cast<const S*>(g.scale) : &scale_value;
  const S* bias = g.bias ? static_cast<const S*>(g.bias) : &zero;
  const int64_t ss = g.scale ? 1 : 0, bs = g.bias ? 1 : 0;

  const XPass xp = x_pass(g);
  bool nan_x[64] = {}, nan_w[64] = {};  // per thread (threads <= 64 take part in binarizing)
  bool any_nan = false;
  ParallelErrors errors;  // the two stretches around the barrier run through it
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_thread_index();
    const int bt = std::min(t, 63), bT = std::min(threads, 64);
    if (t < bT) errors.run([&] {
      with_float_type(g.x_dtype, [&](auto* tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        nan_x[bt] = binarize_x<T>(g, ge, xp, xp.items() * bt / bT, xp.items() * (bt + 1) / bT,
                                  img);
      });
      const int64_t o0 = g.O * bt / bT, o1 = g.O * (bt + 1) / bT;
      if (g.weight_packed) {
        binarize_weight<int32_t>(g, ge, o0, o1, wbits, wsum);
      } else {
        with_float_type(g.weight_dtype, [&](auto* tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          nan_w[bt] = binarize_weight<T>(g, ge, o0, o1, wbits, wsum);
        });
      }
      if (correct) pad_corrections(pc, wsum, g.O, o0, o1, corr);
    });
    // One barrier publishes the bits and the NaN flags; each thread then reads the flags
    // itself (no second synchronisation: on a loaded machine each one can cost a time slice).
#pragma omp barrier
    bool nan_seen = false;
    for (int i = 0; i < 64; ++i) nan_seen |= nan_x[i] || nan_w[i];
    if (t == 0) any_nan = nan_seen;
    if (!nan_seen) errors.run([&] {
      const ThreadScratch ts = carve(scratch + per_thread * t, bl);
      auto entry = [&](int64_t e, int part) {
        const int64_t n = e / g.groups, grp = e % g.groups;
        const BitsA a{PackedBits{reinterpret_cast<const int32_t*>(wbits) +
                                     grp * ge.Og * ge.line(),
                                 ge.line(), 1, ge.line()}};
        const PatchB b{img + e * pixels * ge.cw, g.H, g.W, g.OW, ge.cw, g.KW,
                       g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w};
        const ConvEpilogue<TO> ep{static_cast<TO*>(g.out) + (n * g.O + grp * ge.Og) * ge.P,
                                  ge.P, int32_t(ge.taps * ge.Cg),
                                  correct ? corr + grp * ge.Og : nullptr, g.O,
                                  correct ? pc.pixel_class.data() : nullptr,
                                  correct ? pc.border.data() : nullptr,
                                  int64_t(pc.border.size()),
                                  scale + grp * ge.Og * ss, ss, bias + grp * ge.Og * bs, bs};
        gemm_share(a, b, ep, plan, sp, bl, ts, part);
      };
      if (split_entries) {
        if (t < sp.threads)
          for (int64_t e = 0; e < entries; ++e) entry(e, t);
      } else {
        const int64_t e0 = entries * t / threads, e1 = entries * (t + 1) / threads;
        for (int64_t e = e0; e < e1; ++e) entry(e, 0);
      }
    });
  }
  errors.rethrow();
  if (any_nan) sign_words::throw_nan_operand("binary_conv2d", nan_x, "x", "weight");
}

}  // namespace binary_conv2d_detail

void binary_conv2d_run(const BinaryConv2dArgs& g) {
  using namespace binary_conv2d_detail;
  switch (g.out_dtype) {
    case DType::f64: return run_typed<double>(g);
    case DType::f16: return run_typed<f16_bits>(g);
    case DType::bf16: return run_typed<bf16_bits>(g);
    default: return run_typed<float>(g);
  }
}

}  // namespace KK_ISA
}  // namespace kernelkit
