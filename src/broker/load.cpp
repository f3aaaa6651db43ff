// Start-up from the store: durable sessions, their subscriptions and
// inbound QoS 2 state, retained messages and share-group queues come back;
// sessions that expired while the broker was down end, due wills go out.
// And the commit notifications of the running broker.
#include "src/broker/broker.h"
#include "src/durable/records.h"
#include "src/queues/queue_policy.h"
#include "src/util/log.h"

namespace petrel {

bool Broker::attachStore(std::unique_ptr<persistence::Store> store, std::string& err) {
  durable_.attach(std::move(store), [this](bool failed) { onCommit(failed); });
  return loadStore(err);
}

void Broker::finish() { durable_.finish(); }

bool Broker::loadStore(std::string& err) {
  persistence::Store& st = durable_.store();
  const int64_t now = clock_.wallMs();
  size_t n_sessions = 0, n_subs = 0, n_queued = 0;
  std::vector<std::string> expired;
  bool ok = st.forEachSession(
      [&](std::string_view cid, const persistence::SessionRecord& r) {
        auto s = std::make_unique<Session>(std::string(cid));
        s->version = static_cast<mqtt::Version>(r.version);
        s->expiry_interval = r.expiry_interval;
        s->stored = true;
        s->evicted = true;
        s->username = r.username;
        // A session that was connected when the broker stopped starts its
        // expiry now; one that was offline keeps its wall-clock deadline.
        s->expires_at_ms = r.expires_at_ms;
        if (!s->expires_at_ms && s->expiry_interval != 0xFFFFFFFF)
          s->expires_at_ms = now + int64_t(s->expiry_interval) * 1000;
        if (r.will) {
          s->will = std::make_unique<mqtt::Will>(willFromRecord(*r.will));
          // The connection of a will without a deadline ended when the
          // broker stopped: an abnormal end, so its will is due (after its
          // delay, counted from now).
          s->will_at_ms = r.will_at_ms ? r.will_at_ms
                                       : now + int64_t(s->will->props.will_delay_interval.value_or(0)) * 1000;
        }
        const auto qi = st.queueInfo(cid);
        s->disk_count = qi.count;
        s->next_read_seq = qi.first_seq;
        s->next_seq = qi.last_seq + 1;
        s->queued_bytes = qi.bytes;
        n_queued += qi.count;
        if (s->expires_at_ms && s->expires_at_ms <= now) expired.push_back(s->clientId());
        sessions_.adopt(std::move(s));
        ++n_sessions;
      },
      err);
  if (!ok) return false;
  ok = st.forEachSubscription(
      [&](std::string_view cid, const persistence::SubscriptionRecord& r) {
        Session* sp = sessions_.find(cid);
        if (!sp) return;  // orphan: ignored
        Session& s = *sp;
        const SubscriptionOptions o = subscriptionOptions(r);
        std::string_view queue;
        if (parseQueueFilter(r.key, queue)) {
          // `$queue/<name>`: the queue's groups were declared already.
          if (DeclaredQueue* q = groups_.findQueue(queue)) groups_.joinQueue(s, *q, o, nullptr);
          else LOG_NOTICE("client %s: queue %.*s is no longer declared; its subscription '%s' has no effect",
                          s.clientId().c_str(), static_cast<int>(queue.size()), queue.data(), r.key.c_str());
          s.subscriptions.set(r.key, o);
          s.has_shared = true;
          ++n_subs;
          return;
        }
        router_.tree().subscribe(r.filter, r.group, &s, o);
        s.subscriptions.set(r.key, o);
        if (!r.group.empty()) s.has_shared = true;
        ++n_subs;
      },
      err);
  if (!ok) return false;
  ok = st.forEachInboundQos2(
      [&](std::string_view cid, uint16_t pid) {
        if (Session* s = sessions_.find(cid)) s->inbound_qos2.insert(pid);
      },
      err);
  if (!ok) return false;
  std::vector<std::pair<std::string, uint64_t>> retained;
  ok = st.forEachRetained([&](std::string_view t, uint64_t id) { retained.emplace_back(t, id); }, err);
  if (!ok) return false;
  size_t n_retained = 0;
  // Their messages in one read transaction, not one each.
  std::vector<uint64_t> ids;
  ids.reserve(retained.size());
  for (const auto& r : retained) ids.push_back(r.second);
  std::vector<MessagePtr> msgs = durable_.loadMessages(ids);
  for (size_t i = 0; i < retained.size(); ++i) {
    const std::string& topic = retained[i].first;
    MessagePtr& m = msgs[i];
    if (!m || (m->expires_at_ms && m->expires_at_ms <= now)) {
      durable_.batch().setRetained(topic, 0);  // expired while we were down
      continue;
    }
    router_.retained().set(m);
    ++n_retained;
  }
  groups_.loadQueues();
  groups_.returnAfterRestart();
  delayed_.load();
  LOG_NOTICE("persistence: loaded %zu sessions, %zu subscriptions, %zu queued messages, %zu retained",
             n_sessions, n_subs, n_queued, n_retained);
  // Sessions that expired while the broker was down end now (their wills
  // go out first); wills whose delay passed are published.
  for (const auto& id : expired) {
    Session* s = sessions_.find(id);
    if (!s) continue;
    LOG_INFO("session %s expired while the broker was stopped", id.c_str());
    sessions_.end(s);
  }
  sessions_.forEach([&](Session& s) {
    if (s.will && s.will_at_ms <= now) sessions_.publishWill(s);
    sessions_.scheduleExpiry(s);
  });
  // What start-up rewrote (hand-backs, expiries) is committed before the
  // first client can read its queue.
  st.drain();
  return true;
}

void Broker::onCommit(bool failed) {
  const uint64_t done = durable_.committed();
  if (failed) holds_.commitFailed();
  holds_.release(done);
  sessions_.afterCommit(done);
  groups_.afterCommit();
  delayed_.afterCommit(done);
  cluster_.afterCommit(done, failed);
  // Messages loaded from disk and no longer used by any session.
  durable_.trimCache(4 * Sessions::kRamWindow);
  flushAll();
}

}  // namespace petrel
