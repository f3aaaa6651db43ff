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
        Session& s = sessions_.restore(cid, r, now);
        n_queued += s.disk_count;
        if (s.expires_at_ms && s.expires_at_ms <= now) expired.push_back(s.clientId());
        ++n_sessions;
      },
      err);
  if (!ok) return false;
  ok = st.forEachSubscription(
      [&](std::string_view cid, const persistence::SubscriptionRecord& r) {
        Session* s = sessions_.find(cid);
        if (!s) return;  // orphan: ignored
        sessions_.restoreSubscription(*s, r);
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
  // Sessions::restore armed each session's deadlines; one whose will goes
  // out here keeps only its expiry.
  sessions_.forEach([&](Session& s) {
    if (s.will && s.will_at_ms <= now) {
      sessions_.publishWill(s);
      sessions_.scheduleExpiry(s);
    }
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
  moves_.afterCommit(done);
  adoption_.afterCommit(done);
  // Messages loaded from disk and no longer used by any session.
  durable_.trimCache(4 * Sessions::kRamWindow);
  flushAll();
}

}  // namespace petrel
