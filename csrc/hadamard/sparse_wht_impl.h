// Sparse WHT peeling decoder, written once and compiled once per ISA
// (sparse_wht.cpp, sparse_wht_avx2.cpp, sparse_wht_avx512.cpp): the inner loops over the D
// delays of a bin are plain loops the compiler vectorizes, and the delay signs are popcounts
// (one instruction where POPCNT is enabled). The steps and their order are the reference's
// (python/kernelkit/reference/sparse_wht.py), so both find the same coefficients.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hadamard/sparse_wht.h"

#ifndef KK_INLINE
#define KK_INLINE inline __attribute__((always_inline))
#endif

namespace kernelkit {
namespace KK_ISA {
namespace sparse_wht_detail {

constexpr double kZeroMargin = 6.0;    // zero-ton: energy / D <= var (1 + 6 sqrt(2 / D))
constexpr double kSingleMargin = 6.0;  // single-ton: resid / (D-1) <= var (1 + 6 sqrt(2 / (D-1)))
constexpr double kQuartileZ = 0.6745;  // the standard normal's upper quartile

inline int parity(uint64_t x) { return __builtin_popcountll(x) & 1; }

// sum_d term(d) over [0, D) in 8 interleaved partial sums (a fixed order, so the compiler
// may keep them in one vector register; a single running sum would be one long chain of
// dependent adds, which dominated the decoder).
template <class F> KK_INLINE double lane_sum(int64_t D, F term) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) acc[l] += term(d + l);
  for (int l = 0; d < D; ++d, ++l) acc[l] += term(d);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

struct Fit {
  int64_t k;
  double v, energy, resid;
};

// The decoder's state: W (groups, B, D), a copy of U with each bin's delays contiguous.
class Decoder {
 public:
  explicit Decoder(const SparseWhtDecodeArgs& a)
      : p_(a.plan), D_(p_.delay_count()), B_(p_.bins()), n_(p_.n),
        m_(p_.directions()), W_(size_t(p_.groups) * size_t(B_) * size_t(D_)),
        votes_(size_t(m_)), signs_(size_t(D_)), fit_(size_t(p_.groups * B_)),
        kind_(size_t(p_.groups * B_), -1), inv_(size_t(p_.groups) * size_t(n_)),
        dirs_(size_t(m_)) {
    const int64_t G = p_.groups;
    for (int i = 0; i < m_; ++i) dirs_[size_t(i)] = p_.delays[1 + i] ^ p_.delays[0];
    std::vector<int64_t> rows(static_cast<size_t>(n_));
    for (int c = 0; c < p_.groups; ++c) {
      group_functionals(p_, c, rows.data());
      if (!invert_rows_f2(rows.data(), n_, inv_.data() + size_t(c) * size_t(n_)))
        throw std::invalid_argument("sparse_wht_decode: the plan's functionals do not span");
    }
    double sum = 0;
    for (int64_t c = 0; c < G; ++c)
      for (int64_t d = 0; d < D_; ++d) {
        const double* u = a.U + (c * D_ + d) * B_;
        double* w = W_.data() + c * B_ * D_ + d;
        for (int64_t j = 0; j < B_; ++j) {
          if (!std::isfinite(u[j]))
            throw std::invalid_argument("sparse_wht: the signal's sampled values contain NaN "
                                        "or inf");
          w[j * D_] = u[j];
          sum += u[j] * u[j];
        }
      }
    total_ = sum / double(G * D_);
    const double floor = a.floor_rel * a.floor_rel * std::max(total_, 1e-300);
    const double dof = double(std::max<int64_t>(D_ - 1, 1));
    double var;
    if (a.auto_noise) {
      std::vector<double> per_dof(size_t(G * B_));
      for (int64_t i = 0; i < G * B_; ++i) per_dof[size_t(i)] = fit(i).resid / dof;
      const size_t q = size_t(0.25 * double(per_dof.size() - 1));
      std::nth_element(per_dof.begin(), per_dof.begin() + q, per_dof.end());
      var = per_dof[q] / std::max(1.0 - kQuartileZ * std::sqrt(2.0 / dof), 0.1);
    } else {
      var = a.sigma > 0 ? a.sigma * a.sigma / double(B_) : 0.0;
    }
    var_ = std::max(var, floor);
    zero_limit_ = var_ * (1.0 + kZeroMargin * std::sqrt(2.0 / double(D_))) * double(D_);
    single_limit_ = var_ * (1.0 + kSingleMargin * std::sqrt(2.0 / dof)) * dof;
  }

  int64_t bins_total() const { return p_.groups * B_; }
  double var() const { return var_; }
  double total() const { return total_; }
  double left() const {
    double sum = 0;
    for (double w : W_) sum += w * w;
    return sum / double(p_.groups * D_);
  }

  // (-1)**<k, d> for every delay, into signs_: chain p's delays are r_p, r_p ^ a_1, ..,
  // r_p ^ a_m (check_sparse_wht_plan), so one parity per chain and per direction suffice.
  void delay_signs(int64_t k) {
    const int stride = m_ + 1;
    for (int i = 0; i < m_; ++i)
      votes_[size_t(i)] = double(1 - 2 * parity(uint64_t(k) & uint64_t(dirs_[size_t(i)])));
    for (int p = 0; p < p_.chains; ++p) {
      const double base =
          parity(uint64_t(k) & uint64_t(p_.delays[int64_t(p) * stride])) ? -1.0 : 1.0;
      double* s = signs_.data() + int64_t(p) * stride;
      s[0] = base;
      for (int i = 0; i < m_; ++i) s[1 + i] = base * votes_[size_t(i)];
    }
  }

  int64_t hash(int c, int64_t k) const {
    int64_t j = 0;
    const int64_t* cols = p_.cols + int64_t(c) * p_.b;
    for (int i = 0; i < p_.b; ++i) j |= int64_t(parity(uint64_t(cols[i]) & uint64_t(k))) << i;
    return j;
  }

  // Single-ton fit of bin `bin` (= c * B + j): the bits <a_i, k> by the weighted majority
  // of the chains, then k = R_c^-1 (j, bits).
  Fit fit(int64_t bin) {
    const double* w = W_.data() + bin * D_;
    return fit(bin, w, lane_sum(D_, [w](int64_t d) { return w[d] * w[d]; }));
  }

  Fit fit(int64_t bin, const double* w, double energy) {
    const int stride = m_ + 1;
    std::fill(votes_.begin(), votes_.end(), 0.0);
    for (int p = 0; p < p_.chains; ++p) {
      const double* chain = w + int64_t(p) * stride;
      const double r = chain[0];
      for (int i = 0; i < m_; ++i) votes_[size_t(i)] += r * chain[1 + i];
    }
    uint64_t y = uint64_t(bin % B_);
    for (int i = 0; i < m_; ++i) y |= uint64_t(votes_[size_t(i)] < 0) << (p_.b + i);
    const int64_t* inv = inv_.data() + (bin / B_) * n_;
    int64_t k = 0;
    for (int q = 0; q < n_; ++q) k |= int64_t(parity(uint64_t(inv[q]) & y)) << q;
    delay_signs(k);
    const double* s = signs_.data();
    const double v = lane_sum(D_, [w, s](int64_t d) { return w[d] * s[d]; }) / double(D_);
    const double resid = lane_sum(D_, [w, s, v](int64_t d) {
      const double e = w[d] - v * s[d];
      return e * e;
    });
    return {k, v, energy, resid};
  }

  // 0 zero-ton, 1 single-ton, 2 multi-ton; the fit into *f unless a zero-ton (tested first,
  // from the energy alone).
  // A bin's answer is kept until a peel changes the bin.
  int classify(int64_t bin, Fit* f) {
    int8_t& known = kind_[size_t(bin)];
    if (known >= 0) {
      *f = fit_[size_t(bin)];
      return known;
    }
    const double* w = W_.data() + bin * D_;
    const double energy = lane_sum(D_, [w](int64_t d) { return w[d] * w[d]; });
    if (energy <= zero_limit_) return known = 0;
    *f = fit_[size_t(bin)] = fit(bin, w, energy);
    known = (f->resid <= single_limit_ && hash(int(bin / B_), f->k) == bin % B_) ? 1 : 2;
    return known;
  }

  // Whether k's bins in the groups but `home` hold it: the mean of their projections p on
  // k's delay signs has p * v >= v**2 / 2 (the reference's _Decoder.confirmed).
  bool confirmed(int home, int64_t k, double v) {
    if (p_.groups == 1) return true;
    delay_signs(k);
    const double* s = signs_.data();
    double proj = 0;
    for (int c = 0; c < p_.groups; ++c) {
      if (c == home) continue;
      const double* w = W_.data() + (int64_t(c) * B_ + hash(c, k)) * D_;
      proj += lane_sum(D_, [w, s](int64_t d) { return w[d] * s[d]; }) / double(D_);
    }
    return proj * v >= 0.5 * double(p_.groups - 1) * v * v;
  }

  // Subtracts X[k] = v (signs in signs_, from delay_signs(k)) from bin c * B + hash(c, k) of
  // every group c; the bins into touched.
  void peel(int64_t k, double v, std::vector<int64_t>& touched) {
    delay_signs(k);
    touched.clear();
    for (int c = 0; c < p_.groups; ++c) {
      const int64_t bin = int64_t(c) * B_ + hash(c, k);
      double* w = W_.data() + bin * D_;
      for (int64_t d = 0; d < D_; ++d) w[d] -= v * signs_[size_t(d)];
      kind_[size_t(bin)] = -1;
      touched.push_back(bin);
    }
  }

 private:
  const SparseWhtPlan& p_;
  const int64_t D_, B_;
  const int n_, m_;
  std::vector<double> W_, votes_, signs_;  // votes_ doubles as the direction signs
  std::vector<Fit> fit_;      // per bin: its last fit, valid while kind_ >= 0
  std::vector<int8_t> kind_;  // per bin: its last kind, -1 once a peel changed it
  std::vector<int64_t> inv_;  // (groups, n): R_c^-1 (invert_rows_f2)
  std::vector<int64_t> dirs_; // the m = n - b delay directions
  double total_ = 0, var_ = 0, zero_limit_ = 0, single_limit_ = 0;
};

}  // namespace sparse_wht_detail

void sparse_wht_decode_run(const SparseWhtDecodeArgs& a) {
  using namespace sparse_wht_detail;
  Decoder dec(a);
  const int64_t bins = dec.bins_total();
  std::vector<uint8_t> queued(size_t(bins), 0);
  std::vector<int64_t> queue;  // FIFO: queue[head..]
  queue.reserve(size_t(bins));
  int64_t counts[3] = {0, 0, 0};
  Fit f{};
  for (int64_t bin = 0; bin < bins; ++bin) {
    const int kd = dec.classify(bin, &f);
    ++counts[kd];
    if (kd == 1) {
      queue.push_back(bin);
      queued[size_t(bin)] = 1;
    }
  }
  std::unordered_map<int64_t, int64_t> slot;  // k -> position in the outputs
  int64_t found = 0, peels = 0;
  std::vector<int64_t> touched;
  for (;;) {  // rounds: the FIFO, then a sweep for the single-tons refused meanwhile
    int64_t peeled = 0;
    for (size_t head = 0; head < queue.size() && peels < a.max_peel; ++head) {
      const int64_t bin = queue[head];
      queued[size_t(bin)] = 0;
      if (dec.classify(bin, &f) != 1 || !dec.confirmed(int(bin / a.plan.bins()), f.k, f.v))
        continue;
      auto [it, fresh] = slot.try_emplace(f.k, found);
      if (fresh) {
        a.out_indices[found] = f.k;
        a.out_values[found] = 0.0;
        ++found;
      }
      a.out_values[it->second] += f.v;
      ++peels;
      ++peeled;
      const int64_t k = f.k;
      const double v = f.v;
      dec.peel(k, v, touched);
      for (const int64_t other : touched) {  // its bin in every other group
        if (other == bin || queued[size_t(other)]) continue;
        if (dec.classify(other, &f) == 1) {
          queue.push_back(other);
          queued[size_t(other)] = 1;
        }
      }
    }
    if (peeled == 0 || peels >= a.max_peel) break;
    queue.clear();
    std::fill(queued.begin(), queued.end(), uint8_t(0));
    for (int64_t bin = 0; bin < bins; ++bin)
      if (dec.classify(bin, &f) == 1) {
        queue.push_back(bin);
        queued[size_t(bin)] = 1;
      }
  }
  int64_t unresolved = 0;
  for (int64_t bin = 0; bin < bins; ++bin) unresolved += dec.classify(bin, &f) != 0;
  const double total = dec.total();
  // The reference's make_result: drop values within 3 standard errors of zero (3 sigma_b /
  // sqrt(D)), then order by |value| descending, ties by index.
  const double keep_above = 3.0 * std::sqrt(dec.var()) / std::sqrt(double(a.plan.delay_count()));
  std::vector<std::pair<int64_t, double>> kept;
  kept.reserve(size_t(found));
  for (int64_t i = 0; i < found; ++i)
    if (std::abs(a.out_values[i]) > keep_above)
      kept.emplace_back(a.out_indices[i], a.out_values[i]);
  std::sort(kept.begin(), kept.end(), [](const auto& x, const auto& y) {
    const double ax = std::abs(x.second), ay = std::abs(y.second);
    return ax != ay ? ax > ay : x.first < y.first;
  });
  for (size_t i = 0; i < kept.size(); ++i) {
    a.out_indices[i] = kept[i].first;
    a.out_values[i] = kept[i].second;
  }
  double* s = a.stats;
  s[0] = double(kept.size());
  s[1] = double(counts[0]);
  s[2] = double(counts[1]);
  s[3] = double(counts[2]);
  s[4] = double(unresolved);
  s[5] = double(peels);
  s[6] = std::sqrt(dec.var() * double(a.plan.bins()));
  s[7] = total > 0 ? 1.0 - dec.left() / total : 1.0;
}

}  // namespace KK_ISA
}  // namespace kernelkit
