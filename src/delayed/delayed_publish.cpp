#include "src/delayed/delayed_publish.h"

#include <limits>
#include <vector>

#include "src/delayed/delayed_topic.h"
#include "src/durable/durable.h"
#include "src/durable/records.h"
#include "src/routing/router.h"
#include "src/timers/loop_timers.h"
#include "src/util/log.h"

namespace petrel {

DelayedPublish::DelayedPublish(const Parts& p)
    : cfg_(p.cfg), clock_(p.clock), timers_(p.timers), durable_(p.durable), router_(p.router),
      // Without a store every pending entry is in RAM (load() narrows the
      // window to delayed.ram_window when there is one).
      window_(std::numeric_limits<size_t>::max()),
      timer_(&DelayedPublish::onTimer, this) {}

bool DelayedPublish::claims(std::string_view topic) const { return enabled() && isDelayedTopic(topic); }

mqtt::Reason DelayedPublish::resolve(std::string& topic, int64_t& due_ms) {
  // Read against the wall clock as it is now (a Unix time means that
  // second on it); the due time is kept on the steady clock (clock.h),
  // where a delay stays a delay whatever the wall clock does next. Equal
  // Unix times get equal due times (the step is the same), so they fire in
  // publish order.
  const DelayedTopic d = parseDelayedTopic(topic, clock_.wallMs(), cfg_.delayed.max_delay, cfg_.max_topic_levels);
  if (d.reason != mqtt::Reason::Success) {
    ++refused_;
    return d.reason;
  }
  due_ms = d.due_ms - clock_.wallStepMs();
  topic = std::string(d.target);
  return mqtt::Reason::Success;
}

mqtt::Reason DelayedPublish::schedule(const MessagePtr& m, int64_t due_ms) {
  if (window_.pending() >= cfg_.delayed.max_pending || (durable_.enabled() && durable_.full())) {
    ++refused_;
    return mqtt::Reason::QuotaExceeded;
  }
  const Key k{due_ms, durable_.enabled() ? m->id : ++ram_seq_};
  if (durable_.enabled()) {
    durable_.batch().putDelayed(k, messageRecord(*m));
    unsynced_order_.emplace_back(durable_.ticket(), k);
    unsynced_.emplace(k, m);
  }
  window_.insert(k, m);
  if (window_.empty() || window_.first() == k) arm();
  return mqtt::Reason::Success;
}

void DelayedPublish::load() {
  window_ = DelayedWindow(cfg_.delayed.ram_window);
  window_.setDiskOnly(durable_.store().delayedCount());
  if (window_.pending() == 0) return;
  if (!enabled()) {
    LOG_WARN("persistence: %llu delayed publishes wait in the store while delayed.enabled is false",
             static_cast<unsigned long long>(window_.pending()));
    return;
  }
  arm();
  LOG_NOTICE("persistence: %llu delayed publishes pending, %zu of them in RAM",
             static_cast<unsigned long long>(window_.pending()), window_.inRam());
}

void DelayedPublish::afterCommit(uint64_t done) {
  while (!unsynced_order_.empty() && unsynced_order_.front().first <= done) {
    unsynced_.erase(unsynced_order_.front().second);
    unsynced_order_.pop_front();
  }
  while (!fired_order_.empty() && fired_order_.front().first <= done) {
    fired_unsynced_.erase(fired_order_.front().second);
    fired_order_.pop_front();
  }
}

void DelayedPublish::onTimer(Timer& t) { t.owner<DelayedPublish>()->fireDue(); }

void DelayedPublish::fireDue() {
  const int64_t now = clock_.steadyWallMs();
  const int64_t wall = clock_.wallMs();  // for message expiry, a wall-clock deadline
  for (size_t n = 0; n < kFirePerTurn; ++n) {
    if (window_.needsRefill()) refill();
    if (window_.empty() || window_.first().due_ms > now) break;
    DelayedWindow::Entry e = window_.popFirst();
    fire(e.first, std::move(e.second), wall);
  }
  arm();
}

void DelayedPublish::fire(const Key& k, MessagePtr m, int64_t wall_ms) {
  if (durable_.enabled()) {
    // In the batch of the routing's own writes: it fires once.
    durable_.batch().deleteDelayed(k);
    fired_order_.emplace_back(durable_.ticket(), k);
    fired_unsynced_.insert(k);
    if (!m) {
      persistence::MessageRecord r;
      if (durable_.store().readDelayedMessage(k, r)) m = messageFromRecord(std::move(r), k.msg_id);
    }
  }
  if (!m) {
    ++dropped_;
    LOG_ERROR("persistence: delayed message %llu (due %lld) is unreadable in the store; dropped",
              static_cast<unsigned long long>(k.msg_id), static_cast<long long>(k.due_ms));
    return;
  }
  // [MQTT-3.3.2-5] the Message Expiry Interval counts from the original
  // PUBLISH: a message that expired while it waited is not published.
  if (m->expires_at_ms && m->expires_at_ms <= wall_ms) {
    ++dropped_;
    LOG_DEBUG("delayed message to '%s' expired before it was due; dropped", m->topic.c_str());
    return;
  }
  ++fired_;
  // As its client's PUBLISH would be: retained (or the retained message
  // cleared), then routed. Its store id is unused outside the delayed table
  // until now, so copies for durable queues take it over.
  const uint32_t refs = m->retain && cfg_.retain_available ? router_.retain(m) : 0;
  router_.route(m, refs);
}

void DelayedPublish::arm() {
  if (window_.needsRefill()) refill();
  if (window_.empty() || !enabled()) {
    timer_.cancel();
    return;
  }
  const int64_t left = window_.first().due_ms - clock_.steadyWallMs();
  timers_.arm(timer_, saturatingAdd(timers_.now(), left > 0 ? static_cast<uint64_t>(left) : 0));
}

void DelayedPublish::refill() {
  if (!durable_.enabled()) return;
  // The store has what is committed: entries fired since then are skipped,
  // entries written since then are added.
  const Key after = window_.boundary();
  const size_t want = window_.capacity();
  size_t skip = 0;
  for (auto it = fired_unsynced_.upper_bound(after); it != fired_unsynced_.end(); ++it) ++skip;
  std::vector<DelayedWindow::Entry> next;
  size_t read = 0;
  const size_t limit = want + skip;
  durable_.store().readDelayed(after, limit, [&](const Key& k) {
    ++read;
    if (fired_unsynced_.count(k)) return;
    auto u = unsynced_.find(k);
    next.emplace_back(k, u != unsynced_.end() ? u->second : nullptr);
  });
  const bool all = read < limit;
  // Written but not committed: not in what was read.
  std::vector<DelayedWindow::Entry> extra;
  for (auto it = unsynced_.upper_bound(after); it != unsynced_.end(); ++it) {
    if (fired_unsynced_.count(it->first)) continue;
    extra.emplace_back(it->first, it->second);
  }
  if (!extra.empty()) {
    std::vector<DelayedWindow::Entry> merged;
    merged.reserve(next.size() + extra.size());
    size_t i = 0, j = 0;
    while (i < next.size() || j < extra.size()) {
      if (j == extra.size() || (i < next.size() && next[i].first < extra[j].first)) {
        merged.push_back(std::move(next[i++]));
      } else {
        if (i < next.size() && next[i].first == extra[j].first) ++i;  // committed meanwhile
        merged.push_back(std::move(extra[j++]));
      }
    }
    // Past the end of what was read, an added entry may sort after one not
    // read: keep only what is known to be in order.
    if (!all && !next.empty()) {
      const Key last_read = next.back().first;
      while (!merged.empty() && last_read < merged.back().first) merged.pop_back();
    }
    next.swap(merged);
  }
  const uint64_t expected = window_.diskOnly();
  window_.refill(std::move(next), all);
  if (all && window_.diskOnly() + window_.inRam() != expected)
    LOG_WARN("persistence: %llu delayed publishes were counted but %zu are in the store",
             static_cast<unsigned long long>(expected), window_.inRam() + size_t(window_.diskOnly()));
}

}  // namespace petrel
