// src/sessions/subscription_ids.h — the MQTT 5 Subscription Identifiers a
// delivery carries (§3.3.2.3.8), in one word.
//
// Every queued delivery has this field, and a subscriber's queue may hold
// tens of thousands of them: a std::vector was 24 bytes in each, plus a
// heap block for the usual single id. Here none costs nothing, one is kept
// in the word itself, and only a message matching several subscriptions of
// the same session (overlapping filters, each with an id) puts them on the
// heap.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace petrel {

class SubscriptionIds {
 public:
  SubscriptionIds() = default;
  SubscriptionIds(const std::vector<uint32_t>& ids) { append(ids.data(), ids.size()); }  // NOLINT: converts
  SubscriptionIds(const SubscriptionIds& o) { append(o.begin(), o.size()); }
  SubscriptionIds(SubscriptionIds&& o) noexcept : lo_(o.lo_), hi_(o.hi_) { o.lo_ = o.hi_ = 0; }
  SubscriptionIds& operator=(const SubscriptionIds& o) {
    if (this != &o) {
      clear();
      append(o.begin(), o.size());
    }
    return *this;
  }
  SubscriptionIds& operator=(SubscriptionIds&& o) noexcept {
    if (this != &o) {
      clear();
      lo_ = o.lo_;
      hi_ = o.hi_;
      o.lo_ = o.hi_ = 0;
    }
    return *this;
  }
  SubscriptionIds& operator=(const std::vector<uint32_t>& ids) {
    clear();
    append(ids.data(), ids.size());
    return *this;
  }
  ~SubscriptionIds() { clear(); }

  bool empty() const { return lo_ == 0 && hi_ == 0; }
  size_t size() const { return empty() ? 0 : one() ? 1 : heap()[0]; }
  const uint32_t* begin() const { return empty() ? nullptr : one() ? &lo_ : heap() + 1; }
  const uint32_t* end() const { return begin() + size(); }

  void push_back(uint32_t id) {
    if (empty()) {
      lo_ = id;
      hi_ = kOne;
      return;
    }
    const size_t n = size();
    auto* h = new uint32_t[n + 2];
    h[0] = static_cast<uint32_t>(n + 1);
    std::memcpy(h + 1, begin(), n * sizeof(uint32_t));
    h[n + 1] = id;
    clear();
    setHeap(h);
  }

  std::vector<uint32_t> toVector() const { return std::vector<uint32_t>(begin(), end()); }

 private:
  // The high half of a user-space pointer is never all ones.
  static constexpr uint32_t kOne = 0xFFFFFFFFu;

  bool one() const { return hi_ == kOne; }
  uint32_t* heap() const {
    uint64_t w = (uint64_t(hi_) << 32) | lo_;
    return reinterpret_cast<uint32_t*>(static_cast<uintptr_t>(w));
  }
  void setHeap(uint32_t* h) {
    const auto w = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(h));
    lo_ = static_cast<uint32_t>(w);
    hi_ = static_cast<uint32_t>(w >> 32);
  }
  void append(const uint32_t* ids, size_t n) {
    for (size_t i = 0; i < n; ++i) push_back(ids[i]);
  }
  void clear() {
    if (!empty() && !one()) delete[] heap();
    lo_ = hi_ = 0;
  }

  // Both 0: none. hi_ == kOne: one id, lo_. Otherwise the two halves of a
  // pointer to [n, id 1, ..., id n] on the heap.
  uint32_t lo_ = 0;
  uint32_t hi_ = 0;
};

static_assert(sizeof(SubscriptionIds) == 8, "one word in every delivery");

}  // namespace petrel
