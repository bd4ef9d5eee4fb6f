#include "engine/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#include "engine/expf_x8.h"

namespace inferd {
namespace {

// The splitmix64 finalizer: a bijection whose every output bit depends on
// every input bit, so neighbouring inputs give unrelated outputs.
uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

#if INFERD_EXPF_X8
// The largest non-NaN value of x[0, n), folded into `start` (not NaN).
// _mm256_max_ps returns its second operand when either is NaN, so a NaN
// entry never replaces the running maximum, as in the scalar loops.
float MaxNotNan(const float* x, int n, float start) {
  __m256 m = _mm256_set1_ps(start);
  int i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float best = start;
  for (float v : lanes) best = std::max(best, v);
  for (; i < n; ++i) best = std::max(best, x[i]);
  return best;
}

// The first i with x[i] == value (value occurs in x).
int FirstEqual(const float* x, int n, float value) {
  const __m256 v = _mm256_set1_ps(value);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), v, _CMP_EQ_OQ));
    if (mask != 0) return i + std::countr_zero(static_cast<unsigned>(mask));
  }
  for (; i < n; ++i) {
    if (x[i] == value) return i;
  }
  return 0;
}
#endif

// Exactly llama2.c's argmax, so greedy output can be compared token for token:
// the first maximum wins (only a strictly greater value replaces it), and a
// NaN never replaces anything. Vectorized as the maximum, then the first
// entry equal to it: the same index (+0 and -0 are equal either way).
int ArgMax(const float* x, int n) {
#if INFERD_EXPF_X8
  if (!std::isnan(x[0])) return FirstEqual(x, n, MaxNotNan(x, n, x[0]));
#endif
  int best = 0;
  float best_value = x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] > best_value) {
      best = i;
      best_value = x[i];
    }
  }
  return best;
}

bool HasPenalties(const SamplingParams& params, absl::Span<const int> prompt_ids, absl::Span<const int> output_ids) {
  return (params.repetition_penalty != 1.0f && (!prompt_ids.empty() || !output_ids.empty())) ||
         ((params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f) && !output_ids.empty());
}

// Writes the penalized logits into scratch->logits (vLLM semantics). Every
// penalty applies once per distinct id, however often it occurs. The marks and
// counts in scratch are all zero on entry and are left all zero, by clearing
// only the entries this call touched: O(prompt + output), not O(vocab).
void ApplyPenalties(absl::Span<const float> logits, const SamplingParams& params, absl::Span<const int> prompt_ids,
                    absl::Span<const int> output_ids, SamplerScratch* scratch) {
  const int vocab = static_cast<int>(logits.size());
  std::vector<float>& x = scratch->logits;
  x.assign(logits.begin(), logits.end());
  const auto in_vocab = [vocab](int id) { return id >= 0 && id < vocab; };

  if (params.repetition_penalty != 1.0f) {
    std::vector<uint8_t>& seen = scratch->in_prompt_or_output;
    if (seen.size() < logits.size()) seen.resize(logits.size(), 0);
    const float penalty = params.repetition_penalty;
    const auto penalize = [&](absl::Span<const int> ids) {
      for (int id : ids) {
        if (!in_vocab(id) || seen[id]) continue;
        seen[id] = 1;
        x[id] = x[id] > 0.0f ? x[id] / penalty : x[id] * penalty;
      }
    };
    penalize(prompt_ids);
    penalize(output_ids);
    for (absl::Span<const int> ids : {prompt_ids, output_ids}) {
      for (int id : ids) {
        if (in_vocab(id)) seen[id] = 0;
      }
    }
  }

  if (params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f) {
    std::vector<int>& counts = scratch->counts;
    if (counts.size() < logits.size()) counts.resize(logits.size(), 0);
    for (int id : output_ids) {
      if (in_vocab(id)) ++counts[id];
    }
    // Zeroing a count as it is applied both resets the scratch and makes the
    // later occurrences of the same id skip.
    for (int id : output_ids) {
      if (!in_vocab(id) || counts[id] == 0) continue;
      const int c = counts[id];
      x[id] -= params.presence_penalty + params.frequency_penalty * static_cast<float>(c);
      counts[id] = 0;
    }
  }
}

// One draw from the unnormalized weights p[id_at(0)], ..., p[id_at(n - 1)]
// whose sum, accumulated in that same order, is `total`: the first id whose
// running sum exceeds u * total. Zero weights are never returned; when
// rounding lets the running sum end at or below the target, the last id with
// positive weight is.
template <typename IdAt>
int Draw(const float* p, int n, IdAt id_at, double total, double u) {
  const double target = u * total;
  double cum = 0.0;
  int last = id_at(0);
  for (int i = 0; i < n; ++i) {
    const int id = id_at(i);
    // Branch-free on the weight: a zero adds nothing, so it can never be the
    // first to exceed the target, and masked ids are too random to predict.
    cum += p[id];
    last = p[id] > 0.0f ? id : last;
    if (cum > target) return id;
  }
  return last;
}

// Keeps the top_k highest logits (NaN counts as -inf; ties: lower id first)
// and draws among them in that order. A heap of the k best seen so far costs
// one comparison for almost every id, and only the k kept ids get an exp:
// their renormalization needs nothing from the rest of the vocabulary.
int SampleTopK(const float* src, int vocab, const SamplingParams& params, double u, SamplerScratch* scratch) {
  const auto key = [src](int i) { return std::isnan(src[i]) ? -std::numeric_limits<float>::infinity() : src[i]; };
  const auto better = [&key](int a, int b) { return key(a) != key(b) ? key(a) > key(b) : a < b; };
  const int k = params.top_k;
  std::vector<int>& order = scratch->order;
  order.resize(k);
  int* heap = order.data();  // a max-heap under `better`: heap[0] is the worst kept id
  std::iota(heap, heap + k, 0);
  std::make_heap(heap, heap + k, better);
  const auto offer = [&](int i) {
    if (!better(i, heap[0])) return;
    std::pop_heap(heap, heap + k, better);
    heap[k - 1] = i;
    std::push_heap(heap, heap + k, better);
  };
  int i = k;
#if INFERD_EXPF_X8
  // Most ids are no better than the worst kept one: runs of 8 in which none
  // is are skipped whole. An id after every kept one is better only with a
  // strictly greater key, and a NaN (key -inf) never compares greater.
  for (; i + 8 <= vocab; i += 8) {
    const __m256 worst = _mm256_set1_ps(key(heap[0]));
    if (_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(src + i), worst, _CMP_GT_OQ)) == 0) continue;
    for (int j = i; j < i + 8; ++j) offer(j);
  }
#endif
  for (; i < vocab; ++i) offer(i);
  std::sort_heap(heap, heap + k, better);  // best first
  const float max_logit = src[heap[0]];
  if (!std::isfinite(max_logit)) return ArgMax(src, vocab);

  // Weights at their ids' positions, in place when src is scratch->logits:
  // each id's logit is read just before its own slot is overwritten.
  std::vector<float>& p = scratch->logits;
  p.resize(vocab);
  double kept_total = 0.0;
  for (int i = 0; i < k; ++i) {
    const int id = heap[i];
    const float e = std::exp((src[id] - max_logit) / params.temperature);
    p[id] = e >= 0.0f ? e : 0.0f;
    kept_total += p[id];
  }
  const float* pp = p.data();
  int kept = k;
  if (params.top_p < 1.0f) {
    // The smallest prefix whose probability, renormalized over the k, reaches
    // top_p; never empty, even for top_p <= 0.
    const double target = static_cast<double>(params.top_p) * kept_total;
    double cum = 0.0;
    int n = 0;
    while (n < kept) {
      cum += pp[heap[n++]];
      if (cum >= target) break;
    }
    kept = n;
  }
  if (params.min_p > 0.0f) {
    const float threshold = std::min(params.min_p, 1.0f) * pp[heap[0]];
    int n = 1;  // the top token always stays
    while (n < kept && pp[heap[n]] >= threshold) ++n;
    kept = n;
  }
  double total = 0.0;  // summed in draw order, so the walk ends exactly on it
  for (int i = 0; i < kept; ++i) total += pp[heap[i]];
  return Draw(pp, kept, [heap](int i) { return heap[i]; }, total, u);
}

// Top-p without a full sort. Weights are in [0, 1], where a float's bits
// order like its value, so a histogram of probability mass over the high bits
// finds the bucket in which the nucleus ends; only that bucket's ids are
// sorted (by weight descending, ties lower id first). Zeroes every weight
// outside the nucleus or below `floor` (min-p, which commutes with the cut
// since both keep the top token) and returns the kept total.
double KeepNucleus(float* p, int vocab, float top_p, double total, float floor, SamplerScratch* scratch) {
  constexpr int kShift = 18;                            // 32 buckets per octave
  constexpr int kBuckets = (0x3F800000 >> kShift) + 1;  // up to the bits of 1.0f
  const auto bucket = [p](int i) { return static_cast<int>(std::bit_cast<uint32_t>(p[i]) >> kShift); };
  double mass[kBuckets] = {};
  for (int i = 0; i < vocab; ++i) mass[bucket(i)] += p[i];

  const double target = static_cast<double>(top_p) * total;
  double cum = 0.0;
  int b = kBuckets - 1;
  for (; b >= 0; --b) {
    if (mass[b] == 0.0) continue;
    if (cum + mass[b] >= target) break;
    cum += mass[b];
  }
  float cut_weight = 0.0f;  // kept: weight above the cut, or equal to it with id <= cut_id
  int cut_id = vocab - 1;
  if (b >= 0) {  // b < 0 only when rounding makes the whole vocabulary fall short
    std::vector<int>& order = scratch->order;
    order.resize(vocab);
    int n = 0;
    for (int i = 0; i < vocab; ++i) {
      if (bucket(i) == b) order[n++] = i;
    }
    std::sort(order.begin(), order.begin() + n,
              [p](int x, int y) { return p[x] != p[y] ? p[x] > p[y] : x < y; });
    int j = 0;
    for (; j < n - 1; ++j) {
      cum += p[order[j]];
      if (cum >= target) break;
    }
    cut_weight = p[order[j]];
    cut_id = order[j];
  }
  double kept_total = 0.0;
  for (int i = 0; i < vocab; ++i) {
    const bool in_nucleus = p[i] > cut_weight || (p[i] == cut_weight && i <= cut_id);
    const uint32_t keep = -static_cast<uint32_t>(in_nucleus && p[i] >= floor);  // a mask: see SampleToken
    p[i] = std::bit_cast<float>(std::bit_cast<uint32_t>(p[i]) & keep);
    kept_total += p[i];
  }
  return kept_total;
}

}  // namespace

double UniformForStep(uint64_t seed, uint64_t step) {
  const uint64_t x = SplitMix64(seed ^ SplitMix64(step + 0x9E3779B97F4A7C15ULL));
  return static_cast<double>(x >> 11) * 0x1.0p-53;  // top 53 bits: exactly representable, < 1
}

// Draw order (what u is compared against): with top-k, the kept tokens by
// logit descending, ties lower id first (the order top-k selects them in);
// otherwise ascending token id, so that neither temperature alone nor top-p
// or min-p ever sorts the vocabulary.
int SampleToken(absl::Span<const float> logits, const SamplingParams& params, uint64_t seed, uint64_t step,
                absl::Span<const int> prompt_ids, absl::Span<const int> output_ids, SamplerScratch* scratch) {
  const int vocab = static_cast<int>(logits.size());
  if (vocab == 0) return -1;
  const bool penalized = HasPenalties(params, prompt_ids, output_ids);
  if (penalized) ApplyPenalties(logits, params, prompt_ids, output_ids, scratch);
  const float* src = penalized ? scratch->logits.data() : logits.data();

  // A negative temperature is invalid; treating it as greedy beats inverting
  // the distribution.
  if (params.temperature <= 0.0f) return ArgMax(src, vocab);
  const double u = UniformForStep(seed, step);
  if (params.top_k > 0 && params.top_k < vocab) return SampleTopK(src, vocab, params, u, scratch);

#if INFERD_EXPF_X8
  const float max_logit = MaxNotNan(src, vocab, -std::numeric_limits<float>::infinity());
#else
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < vocab; ++i) max_logit = std::max(max_logit, src[i]);  // skips NaN
#endif
  // All -inf/NaN, or a +inf logit: the distribution is degenerate (or
  // undefined), and its argmax is the only sensible answer.
  if (!std::isfinite(max_logit)) return ArgMax(src, vocab);

  // Softmax numerators in place (src may alias p). Subtracting the max first
  // makes the top token's weight exactly 1, so min-p's threshold, relative to
  // the max probability, is min_p itself; without top-p it is applied here.
  const bool top_p_on = params.top_p < 1.0f;
  const float floor = params.min_p > 0.0f ? std::min(params.min_p, 1.0f) : 0.0f;
  std::vector<float>& p = scratch->logits;
  p.resize(vocab);
  const float exp_floor = top_p_on ? 0.0f : floor;
  // The running total after each id: Draw's walk over the same sums, in the
  // same order, becomes a binary search (below).
  std::vector<double>& running = scratch->running_total;
  if (running.size() < static_cast<size_t>(vocab)) running.resize(vocab);
  double total = 0.0;
  int i = 0;
#if INFERD_EXPF_X8
  // The same float operations 8 ids at a time (ExpfX8 is std::exp bit for
  // bit); the total is still summed id by id, in double.
  const __m256 max8 = _mm256_set1_ps(max_logit);
  const __m256 temperature8 = _mm256_set1_ps(params.temperature);
  const __m256 floor8 = _mm256_set1_ps(exp_floor);
  for (; i + 8 <= vocab; i += 8) {
    const __m256 e = ExpfX8(_mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(src + i), max8), temperature8));
    _mm256_storeu_ps(&p[i], _mm256_and_ps(e, _mm256_cmp_ps(e, floor8, _CMP_GE_OQ)));
    for (int j = i; j < i + 8; ++j) running[j] = total += p[j];
  }
#endif
  for (; i < vocab; ++i) {
    const float e = std::exp((src[i] - max_logit) / params.temperature);
    // A mask, not a branch: which ids min-p drops is unpredictable, and a
    // mispredict costs more than the exp. A NaN logit also gets weight 0.
    const uint32_t keep = -static_cast<uint32_t>(e >= exp_floor);
    p[i] = std::bit_cast<float>(std::bit_cast<uint32_t>(e) & keep);
    running[i] = total += p[i];
  }
  if (!(total > 0.0)) return ArgMax(src, vocab);  // only with a NaN temperature
  if (top_p_on) {
    total = KeepNucleus(p.data(), vocab, params.top_p, total, floor, scratch);
    return Draw(p.data(), vocab, [](int i) { return i; }, total, u);
  }
  // Draw without the walk: the first id whose running total exceeds the
  // target (weights are >= 0, so the totals never decrease, and a zero
  // weight never exceeds where its predecessor did not); when rounding
  // leaves the last total at or below it, the last id with weight.
  const double target = u * total;
  const int id = static_cast<int>(std::upper_bound(running.data(), running.data() + vocab, target) - running.data());
  if (id < vocab) return id;
  for (int j = vocab - 1; j > 0; --j) {
    if (p[j] > 0.0f) return j;
  }
  return 0;
}

}  // namespace inferd
