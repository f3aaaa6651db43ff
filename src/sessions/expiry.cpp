// Time-driven ends of offline sessions: a delayed will (§3.1.3.2.2, Will
// Delay Interval) and session expiry (§3.1.2.11.2). Both deadlines are
// wall-clock times (they survive a restart in the store); the session's
// timer is armed on the loop's monotonic clock at the earlier of them and
// looks again when it fires.
//
// Expired messages in offline sessions' queues (§3.3.2.3.3, [MQTT-3.3.2-5]):
// a delivery drops them as it meets them, but a session that stays away
// would keep them in its queue, on disk and in the queue's figures, until
// it came back or its queue filled. The sweep watches the head of each
// offline session's queue: four times a second it drops what expired
// there, in queue order up to the first live message, at most
// kSweepBudget in all. An entry behind a live one waits until it reaches
// the head.
#include <algorithm>
#include <optional>

#include "src/durable/durable.h"
#include "src/sessions/sessions.h"
#include "src/timers/loop_timers.h"
#include "src/util/log.h"

namespace petrel {

void Sessions::scheduleExpiry(Session& s) {
  watchQueueHead(s);
  int64_t due = 0;
  if (!s.conn) {
    if (s.will && s.will_at_ms) due = s.will_at_ms;
    if (s.expires_at_ms && (!due || s.expires_at_ms < due)) due = s.expires_at_ms;
  }
  if (!due) {
    s.timer.reset();
    return;
  }
  if (!s.timer) s.timer = std::make_unique<SessionTimer>(*this, s, &Sessions::onExpiryTimer);
  // +1 ms: the deadline is due once the wall clock has reached it.
  timers_.arm(s.timer->timer, saturatingAdd(monotonicDeadlineFromWall(timers_.clock(), due), 1));
}

void Sessions::onExpiryTimer(Timer& t) {
  SessionTimer& st = *t.owner<SessionTimer>();
  st.registry->expiryDue(*st.session);
}

void Sessions::expiryDue(Session& s) {
  if (s.conn) return;
  const int64_t wall = clock_.wallMs();
  if (s.will && s.will_at_ms && wall >= s.will_at_ms) {
    publishWill(s);
    if (s.stored) save(s);
  }
  if (s.expires_at_ms && wall >= s.expires_at_ms) {
    LOG_INFO("session %s expired", s.clientId().c_str());
    ++stats_.sessions_expired;
    end(&s);  // frees s and its timer
    return;
  }
  scheduleExpiry(s);
}

namespace {
// How long the sweep waits to look at a queue again whose head is not
// committed yet, or that is moving to another node.
constexpr int64_t kSweepRetryMs = 1000;
}  // namespace

int64_t Sessions::queueHeadExpiry(Session& s) {
  if (!s.queue.empty()) return s.queue.front().msg->expires_at_ms;
  if (s.disk_count == 0 || !durable_.enabled()) return 0;
  std::optional<persistence::QueueRecord> head;
  durable_.store().readQueue(s.clientId(), s.next_read_seq, 1,
                             [&](persistence::QueueRecord& q) { head = std::move(q); });
  if (!head) return -1;
  if (!purgeable(*head)) return 0;
  const MessagePtr m = durable_.loadMessage(head->msg_id);
  return m ? m->expires_at_ms : 0;
}

void Sessions::setSweep(Session& s, int64_t at) {
  if (s.sweep_at_ms == at) return;
  if (s.sweep_at_ms) sweep_.erase({s.sweep_at_ms, &s});
  s.sweep_at_ms = at;
  if (at) sweep_.emplace(at, &s);
}

void Sessions::watchQueueHead(Session& s) {
  if (s.conn) {
    setSweep(s, 0);
    return;
  }
  const int64_t at = queueHeadExpiry(s);
  setSweep(s, at < 0 ? clock_.wallMs() + kSweepRetryMs : at);
}

size_t Sessions::sweepExpiredQueues(size_t budget) {
  if (sweep_.empty()) return 0;
  const int64_t now = clock_.wallMs();
  size_t n = 0;
  while (!sweep_.empty() && n < budget) {
    const auto [at, sp] = *sweep_.begin();
    if (at > now) break;
    Session& s = *sp;
    setSweep(s, 0);
    if (s.conn) continue;  // not watched while online
    if (s.moving) {
      setSweep(s, now + kSweepRetryMs);
      continue;
    }
    n += purgeExpiredHead(s, budget - n);
    // Its new head: looked at again no sooner than the next sweep, unless
    // the budget ran out before the expired ones did (then it comes first
    // in the next sweep).
    const int64_t next = queueHeadExpiry(s);
    if (next < 0) setSweep(s, now + kSweepRetryMs);
    else if (next) setSweep(s, n >= budget ? next : std::max(next, now + 1));
  }
  if (n) LOG_DEBUG("expiry sweep: %zu expired messages left offline sessions' queues", n);
  return n;
}

}  // namespace petrel
