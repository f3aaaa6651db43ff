// src/metrics/top_topics.h — the busiest topics, for the status page, at a
// bounded cost: a PUBLISH costs a countdown and a branch; one in `stride`
// (chosen at random around it) is counted, with weight `stride`, in a table
// of at most kMaxTracked topics that is emptied at the end of every window.
// The stride follows the message rate, so that about kSamplesPerSecond
// messages a second reach the table: at low rates every message is counted
// exactly, at high rates the busy topics still stand out. Topics first seen
// once the table is full wait for the next window (busy ones arrive early).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "src/util/keyed_hash.h"

namespace petrel {

class TopTopics {
 public:
  static constexpr size_t kMaxTracked = 1000;
  static constexpr double kSamplesPerSecond = 2000;
  static constexpr double kWindowS = 3;
  static constexpr size_t kTop = 10;

  struct Entry {
    std::string topic;
    double per_second = 0;
  };

  // Off until enabled: then every message counts down.
  void enable() {
    enabled_ = true;
    countdown_ = 1;
  }
  // Each PUBLISH received.
  void onPublish(const std::string& topic) {
    if (--countdown_ == 0) sample(topic);
  }
  // Once a second or so: `now_s` on a monotonic clock, `msgs_per_s` the
  // current message rate (sets the stride). Closes the window when it is due.
  void tick(double now_s, double msgs_per_s);
  // The busiest topics of the last complete window, busiest first.
  const std::vector<Entry>& top() const { return top_; }
  size_t tracked() const { return counts_.size(); }

 private:
  void sample(const std::string& topic);
  uint32_t nextCountdown();

  std::unordered_map<std::string, uint64_t, KeyedHash, std::equal_to<>> counts_;
  std::vector<Entry> top_;
  uint64_t rng_ = 0x9E3779B97F4A7C15ull;
  double window_start_s_ = -1;
  uint32_t countdown_ = 0xFFFFFFFFu;
  uint32_t stride_ = 1;
  bool enabled_ = false;
};

}  // namespace petrel
