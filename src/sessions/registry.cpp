// The session registry (§4.1): lookup and creation, takeover by a new
// connection, the end of a connection (will, expiry, eviction), the end of
// a session, wills (§3.1.2.5, §3.1.3.2) and session expiry.
#include "src/acks/ack_holds.h"
#include "src/durable/durable.h"
#include "src/durable/records.h"
#include "src/queues/queue_policy.h"
#include "src/queues/shared_groups.h"
#include "src/routing/router.h"
#include "src/security/security.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/util/check.h"
#include "src/util/log.h"

namespace petrel {

Session& Sessions::create(const std::string& client_id) {
  auto owned = std::make_unique<Session>(client_id);
  Session& s = *owned;
  const bool added = map_.emplace(s.clientId(), std::move(owned)).second;
  PETREL_CHECK(added);  // one session per client id
  return s;
}

Session& Sessions::adopt(std::unique_ptr<Session> s) {
  Session& ref = *s;
  const bool added = map_.emplace(ref.clientId(), std::move(s)).second;
  PETREL_CHECK(added);  // the store keys sessions by client id
  return ref;
}


void Sessions::takeOver(Session& s, const std::string& by) {
  Connection* old = s.conn;
  if (!old) return;
  LOG_INFO("client %s: session taken over by %s", s.clientId().c_str(), by.c_str());
  // The old connection ends abnormally: its will goes out (a delayed one is
  // cancelled when the session continues). The session itself passes to
  // the new connection, whatever its expiry.
  s.conn = nullptr;
  old->session = nullptr;
  if (s.has_shared) groups_.returnToGroups(s);
  willAfterAbnormalEnd(s, /*session_ends=*/false);
  old->disconnect(mqtt::Reason::SessionTakenOver);
  // Online again at once: the timer of a delayed will waits for nothing
  // (the will is cancelled when the session continues, or fires when it
  // ends, see handlers/connect.cpp).
}

void Sessions::willAfterAbnormalEnd(Session& s, bool session_ends) {
  if (!s.will) return;
  const uint32_t delay = s.will->props.will_delay_interval.value_or(0);
  if (delay == 0 || session_ends) {
    publishWill(s);
    return;
  }
  // §3.1.3.2.2: the will waits for the delay or the session's end,
  // whichever comes first; a reconnect in between cancels it.
  s.will_at_ms = clock_.wallMs() + int64_t(delay) * 1000;
}

void Sessions::connectionLost(Session& s, bool graceful) {
  s.conn = nullptr;
  if (s.has_shared) groups_.returnToGroups(s);
  LOG_INFO("client %s disconnected%s", s.clientId().c_str(), graceful ? "" : " unexpectedly");
  if (graceful) s.will.reset();
  else willAfterAbnormalEnd(s, /*session_ends=*/s.expiry_interval == 0);
  if (s.expiry_interval == 0) {
    end(&s);
    return;
  }
  if (s.expiry_interval != 0xFFFFFFFF) s.expires_at_ms = clock_.wallMs() + int64_t(s.expiry_interval) * 1000;
  scheduleExpiry(s);
  if (durable(s)) {
    save(s);
    saveInflightIds(s);
    scheduleEvict(s);
  }
}

void Sessions::publishWill(Session& s) {
  if (!s.will) return;
  mqtt::Will w = std::move(*s.will);
  s.will.reset();
  s.will_at_ms = 0;
  if (!mayPublish(s, w.topic)) {  // ACL: the will is a publish by its client
    LOG_INFO("client %s: will on '%s' denied by the ACL", s.clientId().c_str(), w.topic.c_str());
    return;
  }
  auto msg = makeMessage();
  msg->topic = std::move(w.topic);
  msg->payload = std::move(w.payload);
  msg->qos = w.qos;
  msg->retain = w.retain;
  // Its own lifetime, or the configured default for its topic (capped).
  if (const auto life = cfg_.message_expiry.lifetime(msg->topic, w.props.message_expiry_interval))
    msg->expires_at_ms = clock_.wallMs() + int64_t(*life) * 1000;
  w.props.message_expiry_interval.reset();
  w.props.will_delay_interval.reset();
  if (!w.props.empty()) msg->props = std::make_shared<const mqtt::Properties>(std::move(w.props));
  msg->origin = s.clientId();
  LOG_INFO("client %s: publishing will on '%s'", s.clientId().c_str(), msg->topic.c_str());
  msg->id = durable_.newMessageId();
  MessagePtr m = std::move(msg);
  const uint32_t refs = m->retain && cfg_.retain_available ? router_.retain(m) : 0;
  router_.route(m, refs);
}

void Sessions::end(Session* s) {
  // A delayed will is published when its session ends (§3.1.3.2.2).
  if (s->will) publishWill(*s);
  if (s->has_shared) {
    // Group messages still with this member: unacknowledged ones go back to
    // their group; a QoS 2 message it already has (PUBREC received) is done.
    groups_.returnToGroups(*s, true);
    for (const auto& f : s->inflight)
      if (f.d.group()) groups_.release(*f.d.group(), f.d);
    s->inflight.clear();
  }
  router_.unsubscribeAll(*s);
  if (s->conn) {
    s->conn->session = nullptr;
    s->conn = nullptr;
  }
  if (s->stored && durable_.enabled()) durable_.batch().deleteSession(s->clientId());
  if (durable_.enabled()) forgetPending(s);
  setSweep(*s, 0);
  if (s->dropped) LOG_NOTICE("session %s ended; %llu messages were dropped for it",
                             s->clientId().c_str(), static_cast<unsigned long long>(s->dropped));
  if (s->bridge) own_limits_.erase(s);
  const std::string id = s->clientId();  // the key dies with the session
  map_.erase(id);
}

Session& Sessions::restore(std::string_view client_id, const persistence::SessionRecord& r, int64_t now) {
  auto s = std::make_unique<Session>(std::string(client_id));
  s->version = static_cast<mqtt::Version>(r.version);
  s->expiry_interval = r.expiry_interval;
  s->stored = true;
  s->evicted = true;
  s->username = r.username;
  // A session that was connected (when the broker stopped, or on the node
  // it moved from) starts its expiry now; one that was offline keeps its
  // wall-clock deadline.
  s->expires_at_ms = r.expires_at_ms;
  if (!s->expires_at_ms && s->expiry_interval != 0xFFFFFFFF)
    s->expires_at_ms = now + int64_t(s->expiry_interval) * 1000;
  if (r.will) {
    s->will = std::make_unique<mqtt::Will>(willFromRecord(*r.will));
    // The connection of a will without a deadline ended abnormally: its
    // will is due (after its delay, counted from now).
    s->will_at_ms = r.will_at_ms ? r.will_at_ms : now + int64_t(s->will->props.will_delay_interval.value_or(0)) * 1000;
  }
  const auto qi = durable_.store().queueInfo(client_id);
  s->disk_count = qi.count;
  s->next_read_seq = qi.first_seq;
  s->next_seq = qi.last_seq + 1;
  s->queued_bytes = qi.bytes;
  // Its deadlines run from now on, whoever restored it (start-up, a move,
  // a down node's sessions taken here): a connection cancels them.
  Session& ref = adopt(std::move(s));
  scheduleExpiry(ref);
  return ref;
}

bool Sessions::restoreSubscription(Session& s, const persistence::SubscriptionRecord& r) {
  const SubscriptionOptions o = subscriptionOptions(r);
  std::string_view queue;
  if (parseQueueFilter(r.key, queue)) {
    // `$queue/<name>`: the queue's groups were declared already.
    s.subscriptions.set(r.key, o);
    s.has_shared = true;
    if (DeclaredQueue* q = groups_.findQueue(queue)) {
      groups_.joinQueue(s, *q, o, nullptr);
      return true;
    }
    LOG_NOTICE("client %s: queue %.*s is no longer declared; its subscription '%s' has no effect",
               s.clientId().c_str(), static_cast<int>(queue.size()), queue.data(), r.key.c_str());
    return false;
  }
  router_.tree().subscribe(r.filter, r.group, &s, o);
  s.subscriptions.set(r.key, o);
  if (!r.group.empty()) {
    s.has_shared = true;
    // A group this subscription made gets its work queue now: a session
    // moved or taken here from another node may be handed its messages at
    // once. (At start-up loadQueues does the same for every group.)
    SharedGroup* g = router_.tree().findGroup(r.filter, r.group, false);
    if (g && !g->work) groups_.configure(*g);
  }
  return true;
}

}  // namespace petrel
