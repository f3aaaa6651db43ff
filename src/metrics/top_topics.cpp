#include "src/metrics/top_topics.h"

#include <algorithm>
#include <cstddef>

namespace petrel {

uint32_t TopTopics::nextCountdown() {
  if (stride_ <= 1) return 1;
  // xorshift64: uniform in 1 .. 2 * stride - 1, mean `stride`, so that a
  // publisher's regular pattern cannot line up with the sampling.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return 1 + static_cast<uint32_t>(rng_ % (2 * uint64_t(stride_) - 1));
}

void TopTopics::sample(const std::string& topic) {
  if (!enabled_) {
    countdown_ = 0xFFFFFFFFu;
    return;
  }
  countdown_ = nextCountdown();
  auto it = counts_.find(topic);
  if (it != counts_.end()) {
    it->second += stride_;
  } else if (counts_.size() < kMaxTracked) {
    counts_.emplace(topic, stride_);
  }
}

void TopTopics::tick(double now_s, double msgs_per_s) {
  const double want = msgs_per_s / kSamplesPerSecond;
  constexpr uint32_t kMaxStride = 1u << 20;
  if (want <= 1) stride_ = 1;
  else if (want >= kMaxStride) stride_ = kMaxStride;
  else stride_ = static_cast<uint32_t>(want);
  if (window_start_s_ < 0) {
    window_start_s_ = now_s;
    return;
  }
  const double elapsed = now_s - window_start_s_;
  if (elapsed < kWindowS) return;
  std::vector<std::pair<uint64_t, const std::string*>> all;
  all.reserve(counts_.size());
  for (const auto& kv : counts_) all.emplace_back(kv.second, &kv.first);
  const size_t n = std::min(kTop, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : *a.second < *b.second; });
  top_.clear();
  for (size_t i = 0; i < n; ++i) top_.push_back({*all[i].second, static_cast<double>(all[i].first) / elapsed});
  counts_.clear();
  window_start_s_ = now_s;
}

}  // namespace petrel
