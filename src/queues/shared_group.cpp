// Shared subscriptions as work queues (see shared_group.h): enqueueing,
// member selection per strategy, dispatch as windows free up, hand-back of
// unacknowledged messages when a member goes away, and the persisted group
// queue.
#include "src/queues/shared_group.h"

#include <functional>
#include <random>

#include "mqtt/topic.h"
#include "src/broker/broker.h"
#include "src/util/log.h"

namespace petrel {

bool parseShareStrategy(std::string_view n, ShareStrategy& out) {
  if (n == "round_robin") out = ShareStrategy::RoundRobin;
  else if (n == "random") out = ShareStrategy::Random;
  else if (n == "sticky") out = ShareStrategy::Sticky;
  else if (n == "hash_clientid") out = ShareStrategy::HashClientId;
  else if (n == "hash_topic") out = ShareStrategy::HashTopic;
  else if (n == "least_inflight") out = ShareStrategy::LeastInflight;
  else return false;
  return true;
}

const char* shareStrategyName(ShareStrategy s) {
  switch (s) {
    case ShareStrategy::RoundRobin: return "round_robin";
    case ShareStrategy::Random: return "random";
    case ShareStrategy::Sticky: return "sticky";
    case ShareStrategy::HashClientId: return "hash_clientid";
    case ShareStrategy::HashTopic: return "hash_topic";
    case ShareStrategy::LeastInflight: return "least_inflight";
  }
  return "?";
}

bool Broker::memberReady(const Session& s) const {
  Connection* c = s.conn;
  // A member whose output is full is dispatched to again from onWritable.
  return c && c->connected && !c->closing() && s.inflight.size() < s.client_receive_max &&
         c->roomForOutput();
}

Subscriber* Broker::pickMember(SharedGroup& g, const Message& m) {
  const size_t n = g.members.size();
  if (n == 0) return nullptr;
  // A member must be able to take it now and be allowed to read the topic
  // (ACL, checked per message as for plain subscribers).
  auto ready = [&](const Subscriber& x) {
    return memberReady(*x.session) && mayReceive(*x.session, m.topic);
  };
  auto online = [](const Subscriber& x) {
    const Connection* c = x.session->conn;
    return c && c->connected && !c->closing();
  };
  auto roundRobin = [&](bool advance) -> Subscriber* {
    for (size_t i = 0; i < n; ++i) {
      const size_t idx = (g.cursor + i) % n;
      if (ready(g.members[idx])) {
        g.cursor = advance ? idx + 1 : idx;
        return &g.members[idx];
      }
    }
    return nullptr;
  };
  switch (g.strategy) {
    case ShareStrategy::RoundRobin:
      return roundRobin(true);
    case ShareStrategy::Sticky: {
      Subscriber& cur = g.members[g.cursor % n];
      if (ready(cur)) return &cur;
      // Stay with the current member while it is online and only busy.
      if (online(cur)) return nullptr;
      return roundRobin(false);
    }
    case ShareStrategy::Random: {
      static std::mt19937 rng{std::random_device{}()};
      size_t ready_count = 0;
      for (auto& x : g.members) ready_count += ready(x);
      if (!ready_count) return nullptr;
      size_t k = std::uniform_int_distribution<size_t>(0, ready_count - 1)(rng);
      for (auto& x : g.members)
        if (ready(x) && k-- == 0) return &x;
      return nullptr;
    }
    case ShareStrategy::HashClientId:
    case ShareStrategy::HashTopic: {
      const std::string& key = g.strategy == ShareStrategy::HashTopic ? m.topic : m.origin;
      Subscriber& t = g.members[std::hash<std::string>{}(key) % n];
      // Affinity: wait for the member of this key while it is online; only
      // an offline member's keys move to another member.
      if (online(t) && mayReceive(*t.session, m.topic)) return ready(t) ? &t : nullptr;
      return roundRobin(true);
    }
    case ShareStrategy::LeastInflight: {
      Subscriber* best = nullptr;
      size_t best_free = 0;
      for (auto& x : g.members) {
        if (!ready(x)) continue;
        const size_t free = x.session->client_receive_max - x.session->inflight.size();
        if (!best || free > best_free) {
          best = &x;
          best_free = free;
        }
      }
      return best;
    }
  }
  return nullptr;
}

bool Broker::groupEnqueue(SharedGroup& g, const MessagePtr& m) {
  if (cfg_.shared_max_queued && g.queued() >= cfg_.shared_max_queued) {
    ++g.dropped;
    ++stats_.messages_dropped;
    if (!g.drop_logged) {
      g.drop_logged = true;
      LOG_WARN("share group %s/%s: queue full (shared.max_queued_messages = %u), dropping messages",
               g.name.c_str(), g.filter.c_str(), cfg_.shared_max_queued);
    }
    return false;
  }
  GroupEntry e;
  e.msg = m;
  bool stored = false;
  if (store_ && m->qos > 0) {
    if (!g.stored) {
      for (const auto& x : g.members)
        if (durable(*x.session)) g.stored = true;
    }
    if (g.stored && !storeFull()) {
      e.seq = g.next_seq++;
      putGroupEntry(g, *m, e.seq);
      stored = true;
      // Beyond the RAM window the entry lives only in the store.
      if (g.disk_count > 0 || g.queue.size() >= kRamWindow) {
        if (g.disk_count++ == 0) g.next_read_seq = e.seq;
        return true;
      }
    }
  }
  g.queue.push_back(std::move(e));
  return stored;
}

void Broker::putGroupEntry(SharedGroup& g, const Message& m, uint64_t seq) {
  persistence::QueueRecord q;
  q.seq = seq;
  q.msg_id = m.id;
  q.qos = m.qos;
  q.retain = m.retain;
  q.bytes = static_cast<uint32_t>(m.payload.size());
  store_->batch().putQueue(g.owner(), q);
}

void Broker::moveToGroup(SharedGroup& g, Session& s, uint64_t member_seq, const Message& m,
                         uint64_t group_seq) {
  putGroupEntry(g, m, group_seq);
  store_->batch().addRefs(m.id, 1);  // before the delete drops the member's
  store_->batch().deleteQueue(s.clientId(), member_seq, m.id);
}

size_t Broker::groupRefill(SharedGroup& g) {
  if (!store_ || g.disk_count == 0 || g.queue.size() >= kRamWindow / 2) return 0;
  const size_t want = kRamWindow - g.queue.size();
  std::vector<persistence::QueueRecord> recs;
  size_t loaded = 0;
  // Entries handed back are skipped (they are in RAM): read on until
  // something loads or the committed entries run out.
  do {
    recs.clear();
    store_->readQueue(g.owner(), g.next_read_seq, want,
                      [&](const persistence::QueueRecord& q) { recs.push_back(q); });
    loaded += groupLoad(g, recs);
  } while (loaded == 0 && !recs.empty() && g.disk_count > 0);
  if (g.disk_count > 0 && recs.empty() && !g.refill_waiting) {
    // What is left was written in batches not yet committed.
    g.refill_waiting = true;
    group_refill_pending_.push_back(&g);
  }
  return loaded;
}

size_t Broker::groupLoad(SharedGroup& g, const std::vector<persistence::QueueRecord>& recs) {
  size_t loaded = 0;
  for (const auto& q : recs) {
    g.next_read_seq = q.seq + 1;
    auto hb = std::find(g.handed_back.begin(), g.handed_back.end(), q.seq);
    if (hb != g.handed_back.end()) {  // in RAM already
      g.handed_back.erase(hb);
      continue;
    }
    if (g.disk_count) --g.disk_count;
    GroupEntry e;
    e.msg = loadMessage(q.msg_id);
    e.seq = q.seq;
    if (!e.msg) {
      LOG_ERROR("persistence: message %llu of share group %s/%s is missing from the store; entry dropped",
                static_cast<unsigned long long>(q.msg_id), g.name.c_str(), g.filter.c_str());
      store_->batch().deleteQueue(g.owner(), q.seq, q.msg_id);
      continue;
    }
    g.queue.push_back(std::move(e));
    ++loaded;
  }
  return loaded;
}

void Broker::dispatchGroup(SharedGroup& g) {
  const int64_t now = nowMs();
  // With the hash strategies a message waits for its own member; messages
  // for other, idle members behind it may go ahead (their keys' order is
  // unaffected), looking at most this far into the queue.
  const bool keyed = g.strategy == ShareStrategy::HashClientId || g.strategy == ShareStrategy::HashTopic;
  constexpr size_t kLookAhead = 256;
  size_t skipped = 0;
  groupRefill(g);
  while (g.queue.size() > skipped || (skipped == 0 && g.disk_count > 0 && groupRefill(g) > 0)) {
    auto pos = g.queue.begin() + static_cast<std::ptrdiff_t>(skipped);
    GroupEntry& e = *pos;
    if (e.msg->expires_at_ms && e.msg->expires_at_ms <= now) {
      if (e.seq && store_) store_->batch().deleteQueue(g.owner(), e.seq, e.msg->id);
      ++stats_.messages_dropped;
      g.queue.erase(pos);
      continue;
    }
    Subscriber* m = pickMember(g, *e.msg);
    if (!m) {
      bool allowed = false;
      for (const auto& x : g.members) allowed = allowed || mayReceive(*x.session, e.msg->topic);
      if (!allowed && !g.members.empty()) {
        // No member may read this topic (ACL): it would wait forever.
        if (e.seq && store_) store_->batch().deleteQueue(g.owner(), e.seq, e.msg->id);
        ++g.dropped;
        ++stats_.messages_dropped;
        g.queue.erase(pos);
        continue;
      }
      if (!keyed || ++skipped >= kLookAhead) break;
      continue;
    }
    Session& s = *m->session;
    Delivery d;
    d.msg = e.msg;
    d.qos = std::min(e.msg->qos, m->opts.qos);
    d.retain = m->opts.retain_as_published && e.msg->retain;
    if (m->opts.subscription_id) d.subscription_ids.push_back(m->opts.subscription_id);
    d.group = &g;
    d.group_seq = e.seq;
    const bool again = e.redelivery;
    g.queue.erase(pos);
    ++g.delivered;
    if (again) ++g.redelivered;
    if (d.qos == 0) {
      sendPublish(s, *s.conn, d, 0, false);
      ++g.inflight;  // released at once
      groupRelease(g, d);
      continue;
    }
    ++g.inflight;
    // A durable member takes the message over from the group queue: in one
    // batch its own queue entry (with the packet id, later the PUBREC
    // state) is written and the group's entry deleted. After a crash the
    // member's session resends it under the same packet id, as MQTT
    // requires [MQTT-4.4.0-1], and the group does not hand it to anyone
    // else. A member without a durable session leaves it in the group's
    // store: after a crash the group delivers it again (at least once).
    const bool take_over = d.group_seq && durable(s) && s.stored;
    if (take_over) d.seq = s.next_seq++;
    const uint64_t msg_id = d.msg->id, group_seq = d.group_seq;
    if (!sendNew(s, *s.conn, std::move(d))) continue;  // forget() released it
    if (take_over) {
      InflightOut& f = s.inflight.back();
      f.d.group_seq = 0;
      store_->batch().addRefs(msg_id, 1);  // before the delete drops the group's
      store_->batch().deleteQueue(g.owner(), group_seq, msg_id);
    }
  }
}

void Broker::returnGroupMessagesAfterRestart() {
  // The broker stopped (or crashed) while members held group messages:
  // their connections are gone, as if each member had left. A QoS 1
  // message goes back to its group, like returnToGroups does. A QoS 2 one
  // stays with the member's durable session: the member may have it
  // already, and only its own session can complete it exactly once (the
  // same packet id, DUP, or PUBREL) when it reconnects; should its session
  // expire first, endSession hands it back.
  for (auto& [cid, sp] : sessions_) {
    Session& s = *sp;
    if (!s.has_shared || s.disk_count == 0) continue;
    std::vector<persistence::QueueRecord> back;
    // Entries in flight to a member are few (its window), but they can be
    // anywhere in its queue: the whole queue is read, as queueInfo did.
    store_->readQueue(s.clientId(), 0, SIZE_MAX, [&](const persistence::QueueRecord& q) {
      if (!q.group.empty() && q.qos == 1) back.push_back(q);
    });
    for (auto it = back.rbegin(); it != back.rend(); ++it) {
      const persistence::QueueRecord& q = *it;
      SharedGroup* g = groupByOwner(q.group);
      MessagePtr m = g ? loadMessage(q.msg_id) : nullptr;
      if (!m) continue;  // the member left the group: it keeps the message
      GroupEntry e;
      e.msg = m;
      e.seq = g->next_seq++;
      e.redelivery = true;
      moveToGroup(*g, s, q.seq, *m, e.seq);
      g->stored = true;
      if (g->disk_count > 0) g->handed_back.push_back(e.seq);
      g->queue.push_front(std::move(e));
      --s.disk_count;
      s.queued_bytes -= std::min<uint64_t>(s.queued_bytes, q.bytes);
    }
    if (!back.empty())
      LOG_INFO("client %s: %zu unacknowledged shared-subscription messages handed back to their groups after the restart",
               s.clientId().c_str(), back.size());
  }
}

SharedGroup* Broker::groupByOwner(std::string_view owner) {
  // "\x01share/<name>/<filter>" (SharedGroup::owner); a share name has no '/'.
  constexpr std::string_view prefix = "\x01share/";
  if (owner.substr(0, prefix.size()) != prefix) return nullptr;
  owner.remove_prefix(prefix.size());
  const size_t slash = owner.find('/');
  if (slash == std::string_view::npos) return nullptr;
  return tree_.findGroup(owner.substr(slash + 1), owner.substr(0, slash), false);
}

void Broker::groupRelease(SharedGroup& g, const Delivery& d) {
  if (g.inflight) --g.inflight;
  if (d.group_seq && store_) store_->batch().deleteQueue(g.owner(), d.group_seq, d.msg ? d.msg->id : 0);
}

void Broker::dispatchMemberGroups(Session& s) {
  if (!s.has_shared) return;
  for (const auto& e : s.subscriptions) {
    mqtt::SharedFilter sf;
    if (!mqtt::parseSharedFilter(e.key, sf) || !sf.shared) continue;
    if (SharedGroup* g = tree_.findGroup(sf.filter, sf.group, false)) dispatchGroup(*g);
  }
}

void Broker::returnToGroups(Session& s, bool session_ends) {
  // Nothing stuck with a dead member: QoS 1/2 messages the member had not
  // acknowledged go back to the front of their group's queue, in their
  // original order. A QoS 2 message whose PUBREC came back stays: the
  // member has it.
  std::vector<SharedGroup*> touched;
  for (auto it = s.inflight.end(); it != s.inflight.begin();) {
    --it;
    if (!it->d.group || it->released) continue;
    // A QoS 2 message stays with a durable member's session while it
    // lasts: the member may have it (PUBREC on its way) and still holds its
    // packet id, so only that session can complete it exactly once, and
    // the id must not be reused for another message meanwhile.
    if (it->d.qos == 2 && !session_ends && durable(s)) continue;
    SharedGroup& g = *it->d.group;
    GroupEntry e;
    e.msg = it->d.msg;
    e.seq = it->d.group_seq;
    e.redelivery = true;
    if (it->d.seq && store_) {
      // The member had taken it over (dispatchGroup): the group's store
      // owns it again, under a new position.
      e.seq = g.next_seq++;
      moveToGroup(g, s, it->d.seq, *e.msg, e.seq);
      if (g.disk_count > 0) g.handed_back.push_back(e.seq);
    }
    if (g.inflight) --g.inflight;
    g.queue.push_front(std::move(e));
    touched.push_back(&g);
    s.queued_bytes -= std::min<uint64_t>(s.queued_bytes, it->d.msg->payload.size());
    it = s.inflight.erase(it);
  }
  if (!touched.empty())
    LOG_INFO("client %s left with %zu unacknowledged shared-subscription messages: handed back to their groups",
             s.clientId().c_str(), touched.size());
  for (SharedGroup* g : touched) dispatchGroup(*g);
}

void Broker::maybeDropGroup(SharedGroup& g) {
  if (!g.unused()) return;
  for (auto& p : group_refill_pending_)
    if (p == &g) p = nullptr;
  const std::string filter = g.filter, name = g.name;  // g dies in dropGroup
  tree_.dropGroup(filter, name);
}

void Broker::configureGroup(SharedGroup& g) {
  auto it = cfg_.shared_group_strategies.find(g.name);
  g.strategy = it != cfg_.shared_group_strategies.end() ? it->second : cfg_.shared_strategy;
}

void Broker::loadGroupQueues() {
  // Groups exist once the durable members' subscriptions are loaded; their
  // queues come back from the store. Queues of groups no member holds any
  // more are removed.
  std::vector<std::string> live;
  tree_.forEachGroup([&](SharedGroup& g) {
    configureGroup(g);
    const std::string owner = g.owner();
    live.push_back(owner);
    // The queue's first window comes into RAM; the rest waits on disk.
    const auto qi = store_->queueInfo(owner);
    if (qi.count == 0) return;
    g.stored = true;
    g.next_seq = qi.last_seq + 1;
    g.next_read_seq = qi.first_seq;
    g.disk_count = qi.count;
    groupRefill(g);
  });
  store_->forEachQueueOwner("\x01share/", [&](std::string_view owner) {
    for (const auto& l : live)
      if (l == owner) return;
    store_->batch().deleteSession(owner);
  });
}

std::string Broker::groupReport() {
  std::string out;
  tree_.forEachGroup([&](SharedGroup& g) {
    size_t online = 0;
    for (auto& m : g.members) online += m.session->conn != nullptr;
    char line[512];
    snprintf(line, sizeof line,
             "share group %s/%s: strategy %s, members %zu (%zu online), queued %zu, in flight %zu, "
             "delivered %llu, redelivered %llu, dropped %llu\n",
             g.name.c_str(), g.filter.c_str(), shareStrategyName(g.strategy), g.members.size(), online,
             g.queued(), g.inflight, static_cast<unsigned long long>(g.delivered),
             static_cast<unsigned long long>(g.redelivered), static_cast<unsigned long long>(g.dropped));
    out += line;
  });
  return out;
}

}  // namespace petrel
