#include "src/delayed/delayed_topic.h"

#include <limits>

#include "mqtt/topic.h"

namespace petrel {

DelayedTopic parseDelayedTopic(std::string_view topic, int64_t now_ms, uint64_t max_delay_s,
                               size_t max_levels) {
  using mqtt::Reason;
  DelayedTopic out;
  std::string_view rest = topic.substr(kDelayedPrefix.size());
  const size_t slash = rest.find('/');
  const std::string_view digits = rest.substr(0, slash);
  if (slash == std::string_view::npos || digits.empty()) {
    out.reason = Reason::TopicNameInvalid;
    return out;
  }
  // Decimal digits only (no sign, no fraction, no spaces); a number too
  // large for 64 bits is a time too far ahead, not a malformed one.
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  uint64_t n = 0;
  for (char ch : digits) {
    if (ch < '0' || ch > '9') {
      out.reason = Reason::TopicNameInvalid;
      return out;
    }
    const uint64_t d = static_cast<uint64_t>(ch - '0');
    n = n > (kMax - d) / 10 ? kMax : n * 10 + d;
  }
  out.target = rest.substr(slash + 1);
  if (out.target.empty() || isDelayedTopic(out.target) || !mqtt::validTopicName(out.target, max_levels)) {
    out.reason = Reason::TopicNameInvalid;
    return out;
  }
  const uint64_t now = now_ms > 0 ? static_cast<uint64_t>(now_ms) : 0;
  uint64_t delay_ms;
  if (n < kDelayedHorizonS) {
    delay_ms = n * 1000;
  } else if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 1000) {
    out.reason = Reason::QuotaExceeded;
    return out;
  } else {
    // A Unix time: due then, or now if it has passed.
    const uint64_t at_ms = n * 1000;
    delay_ms = at_ms > now ? at_ms - now : 0;
  }
  if (delay_ms > max_delay_s * 1000) {
    out.reason = Reason::QuotaExceeded;
    return out;
  }
  out.due_ms = static_cast<int64_t>(now + delay_ms);
  return out;
}

}  // namespace petrel
