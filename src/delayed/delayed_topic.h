// src/delayed/delayed_topic.h — the topic form of a delayed publish,
// `$delayed/<N>/<topic>`: N decimal digits; below kDelayedHorizonS it is a
// delay in seconds, from it on a Unix time in seconds. Pure functions, no
// state (unit-tested on their own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mqtt/protocol.h"

namespace petrel {

inline constexpr std::string_view kDelayedPrefix = "$delayed/";
// N below this is a delay in seconds, N from this on a Unix time in seconds
// (42,949,670 s: about 497 days, and 1971-05-12 as a Unix time). It is also
// the furthest ahead a delayed publish may be due.
inline constexpr uint64_t kDelayedHorizonS = 42'949'670;

inline bool isDelayedTopic(std::string_view topic) {
  return topic.substr(0, kDelayedPrefix.size()) == kDelayedPrefix;
}

struct DelayedTopic {
  // Success; TopicNameInvalid: N not decimal digits, or the target topic
  // empty, invalid or itself delayed; QuotaExceeded: due further ahead than
  // `max_delay_s`.
  mqtt::Reason reason = mqtt::Reason::Success;
  std::string_view target;  // the topic it is published to when due
  int64_t due_ms = 0;       // wall clock; a Unix time in the past is due now
};

// Reads `topic` (which starts with kDelayedPrefix) published at wall time
// `now_ms`. `max_levels` bounds the target's levels as for any topic name
// (0: no bound).
DelayedTopic parseDelayedTopic(std::string_view topic, int64_t now_ms, uint64_t max_delay_s,
                               size_t max_levels = 0);

}  // namespace petrel
