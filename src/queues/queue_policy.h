// src/queues/queue_policy.h — the pure rules of declared queues (`queues:`
// in the configuration): the `$queue/<name>` subscription form, and when a
// queued entry may no longer be handed out (retention, message_ttl).
#pragma once

#include <cstdint>
#include <string_view>

namespace petrel {

constexpr std::string_view kQueuePrefix = "$queue/";

// True for any filter in the `$queue/` namespace (valid or not).
inline bool isQueueFilter(std::string_view f) { return f.substr(0, kQueuePrefix.size()) == kQueuePrefix; }

// A queue name: not empty, without '/', '+' or '#'.
inline bool validQueueName(std::string_view name) {
  return !name.empty() && name.find_first_of("/+#") == std::string_view::npos;
}

// Splits `$queue/<name>`; false when `f` is not of that form.
inline bool parseQueueFilter(std::string_view f, std::string_view& name) {
  if (!isQueueFilter(f)) return false;
  name = f.substr(kQueuePrefix.size());
  return validQueueName(name);
}

// The wall-clock time (ms) after which an entry queued at `queued_at_ms`
// is not handed out any more, 0 = never: `retention_s` after it was
// queued, and `ttl_s` after it for a message without its own expiry
// (`msg_expires_at_ms` 0; a message's own expiry is checked on its own).
inline int64_t queueEntryDeadline(int64_t queued_at_ms, int64_t msg_expires_at_ms, uint32_t ttl_s,
                                  uint32_t retention_s) {
  int64_t d = 0;
  if (retention_s) d = queued_at_ms + int64_t(retention_s) * 1000;
  if (ttl_s && msg_expires_at_ms == 0) {
    const int64_t t = queued_at_ms + int64_t(ttl_s) * 1000;
    if (d == 0 || t < d) d = t;
  }
  return d;
}

// An entry past its deadline (or its message past its expiry) is dropped
// when met, never handed out.
inline bool queueEntryExpired(int64_t deadline_ms, int64_t msg_expires_at_ms, int64_t now_ms) {
  return (deadline_ms && deadline_ms <= now_ms) || (msg_expires_at_ms && msg_expires_at_ms <= now_ms);
}

}  // namespace petrel
