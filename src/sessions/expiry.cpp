// Time-driven ends of offline sessions: a delayed will (§3.1.3.2.2, Will
// Delay Interval) and session expiry (§3.1.2.11.2). Both deadlines are
// wall-clock times (they survive a restart in the store); the session's
// timer is armed on the loop's monotonic clock at the earlier of them and
// looks again when it fires.
#include "src/durable/durable.h"
#include "src/sessions/sessions.h"
#include "src/timers/loop_timers.h"
#include "src/util/log.h"

namespace petrel {

void Sessions::scheduleExpiry(Session& s) {
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

}  // namespace petrel
