// Shared subscriptions as work queues (see shared_group.h and
// shared_groups.h): enqueueing, dispatch as windows free up, hand-back of
// unacknowledged messages when a member goes away, and the persisted group
// queue with its RAM window.
#include "src/queues/shared_groups.h"

#include <algorithm>

#include "mqtt/topic.h"
#include "src/durable/durable.h"
#include "src/durable/records.h"
#include "src/queues/share_strategy.h"
#include "src/routing/topic_tree.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/util/log.h"

namespace petrel {

bool SharedGroups::enqueue(SharedGroup& g, const MessagePtr& m) {
  if (cfg_.shared_max_queued && g.queued() >= cfg_.shared_max_queued) {
    // Expired messages at the head of the queue make room first.
    const int64_t now = clock_.wallMs();
    while (!g.work->queue.empty()) {
      const GroupEntry& e = g.work->queue.front();
      if (!e.msg->expires_at_ms || e.msg->expires_at_ms > now) break;
      if (e.seq && durable_.enabled()) durable_.batch().deleteQueue(g.owner(), e.seq, e.msg->id);
      ++stats_.messages_dropped;
      ++stats_.messages_expired;
      g.work->queue.pop_front();
    }
  }
  if (cfg_.shared_max_queued && g.queued() >= cfg_.shared_max_queued) {
    ++g.work->dropped;
    ++stats_.messages_dropped;
    ++stats_.dropped_queue_full;
    if (!g.work->drop_logged) {
      g.work->drop_logged = true;
      LOG_WARN("share group %s/%s: queue full (shared.max_queued_messages = %u), dropping messages",
               g.name.c_str(), g.filter.c_str(), cfg_.shared_max_queued);
    }
    return false;
  }
  GroupEntry e;
  e.msg = m;
  bool stored = false;
  if (durable_.enabled() && m->qos > 0) {
    if (!g.work->stored) {
      for (const auto& x : g.members)
        if (sessions_.durable(*x.session)) g.work->stored = true;
    }
    if (g.work->stored && !durable_.full()) {
      e.seq = g.work->next_seq++;
      putEntry(g, *m, e.seq);
      stored = true;
      // Beyond the RAM window the entry lives only in the store.
      if (g.work->disk_count > 0 || g.work->queue.size() >= Sessions::kRamWindow) {
        if (g.work->disk_count++ == 0) g.work->next_read_seq = e.seq;
        return true;
      }
    }
  }
  g.work->queue.push_back(std::move(e));
  return stored;
}

void SharedGroups::putEntry(SharedGroup& g, const Message& m, uint64_t seq) {
  durable_.batch().putQueue(g.owner(), groupQueueRecord(m, seq));
}

void SharedGroups::moveToGroup(SharedGroup& g, Session& s, uint64_t member_seq, const Message& m,
                         uint64_t group_seq) {
  putEntry(g, m, group_seq);
  durable_.batch().addRefs(m.id, 1);  // before the delete drops the member's
  durable_.batch().deleteQueue(s.clientId(), member_seq, m.id);
}

size_t SharedGroups::refill(SharedGroup& g) {
  if (!durable_.enabled() || g.work->disk_count == 0 || g.work->queue.size() >= Sessions::kRamWindow / 2) return 0;
  const size_t want = Sessions::kRamWindow - g.work->queue.size();
  std::vector<persistence::QueueRecord> recs;
  size_t loaded = 0;
  // Entries handed back are skipped (they are in RAM): read on until
  // something loads or the committed entries run out.
  do {
    recs.clear();
    durable_.store().readQueue(g.owner(), g.work->next_read_seq, want,
                      [&](const persistence::QueueRecord& q) { recs.push_back(q); });
    loaded += load(g, recs);
  } while (loaded == 0 && !recs.empty() && g.work->disk_count > 0);
  if (g.work->disk_count > 0 && recs.empty() && !g.work->refill_waiting) {
    // What is left was written in batches not yet committed.
    g.work->refill_waiting = true;
    refill_pending_.push_back(&g);
  }
  return loaded;
}

size_t SharedGroups::load(SharedGroup& g, const std::vector<persistence::QueueRecord>& recs) {
  size_t loaded = 0;
  for (const auto& q : recs) {
    g.work->next_read_seq = q.seq + 1;
    auto hb = std::find(g.work->handed_back.begin(), g.work->handed_back.end(), q.seq);
    if (hb != g.work->handed_back.end()) {  // in RAM already
      g.work->handed_back.erase(hb);
      continue;
    }
    if (g.work->disk_count) --g.work->disk_count;
    GroupEntry e;
    e.msg = durable_.loadMessage(q.msg_id);
    e.seq = q.seq;
    if (!e.msg) {
      LOG_ERROR("persistence: message %llu of share group %s/%s is missing from the store; entry dropped",
                static_cast<unsigned long long>(q.msg_id), g.name.c_str(), g.filter.c_str());
      durable_.batch().deleteQueue(g.owner(), q.seq, q.msg_id);
      continue;
    }
    g.work->queue.push_back(std::move(e));
    ++loaded;
  }
  return loaded;
}

void SharedGroups::dispatch(SharedGroup& g) {
  const int64_t now = clock_.wallMs();
  // With the hash strategies a message waits for its own member; messages
  // for other, idle members behind it may go ahead (their keys' order is
  // unaffected), looking at most this far into the queue.
  const bool keyed = g.strategy == ShareStrategy::HashClientId || g.strategy == ShareStrategy::HashTopic;
  constexpr size_t kLookAhead = 256;
  size_t skipped = 0;
  refill(g);
  while (g.work->queue.size() > skipped || (skipped == 0 && g.work->disk_count > 0 && refill(g) > 0)) {
    auto pos = g.work->queue.begin() + static_cast<std::ptrdiff_t>(skipped);
    GroupEntry& e = *pos;
    if (e.msg->expires_at_ms && e.msg->expires_at_ms <= now) {
      // [MQTT-3.3.2-5] expired in the group queue: no member gets it.
      if (e.seq && durable_.enabled()) durable_.batch().deleteQueue(g.owner(), e.seq, e.msg->id);
      ++stats_.messages_dropped;
      ++stats_.messages_expired;
      g.work->queue.erase(pos);
      continue;
    }
    const Message& msg = *e.msg;
    Subscriber* m = pickMember(
        g, msg, [&](const Subscriber& x) { return sessions_.ready(*x.session) && sessions_.mayReceive(*x.session, msg.topic); },
        [](const Subscriber& x) {
          const Connection* c = x.session->conn;
          return c && c->connected && !c->closing();
        },
        [&](const Subscriber& x) { return sessions_.mayReceive(*x.session, msg.topic); });
    if (!m) {
      bool allowed = false;
      for (const auto& x : g.members) allowed = allowed || sessions_.mayReceive(*x.session, e.msg->topic);
      if (!allowed && !g.members.empty()) {
        // No member may read this topic (ACL): it would wait forever.
        if (e.seq && durable_.enabled()) durable_.batch().deleteQueue(g.owner(), e.seq, e.msg->id);
        ++g.work->dropped;
        ++stats_.messages_dropped;
        ++stats_.dropped_not_authorized;
        g.work->queue.erase(pos);
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
    g.work->queue.erase(pos);
    ++g.work->delivered;
    if (again) ++g.work->redelivered;
    if (d.qos == 0) {
      sessions_.sendPublish(s, *s.conn, d, 0, false);
      ++g.work->inflight;  // released at once
      release(g, d);
      continue;
    }
    ++g.work->inflight;
    // A durable member takes the message over from the group queue: in one
    // batch its own queue entry (with the packet id, later the PUBREC
    // state) is written and the group's entry deleted. After a crash the
    // member's session resends it under the same packet id, as MQTT
    // requires [MQTT-4.4.0-1], and the group does not hand it to anyone
    // else. A member without a durable session leaves it in the group's
    // store: after a crash the group delivers it again (at least once).
    const bool take_over = d.group_seq && sessions_.durable(s) && s.stored;
    if (take_over) d.seq = s.next_seq++;
    const uint64_t msg_id = d.msg->id, group_seq = d.group_seq;
    if (!sessions_.sendNew(s, *s.conn, std::move(d))) continue;  // forget() released it
    if (take_over) {
      InflightOut& f = s.inflight.back();
      f.d.group_seq = 0;
      durable_.batch().addRefs(msg_id, 1);  // before the delete drops the group's
      durable_.batch().deleteQueue(g.owner(), group_seq, msg_id);
    }
  }
}

void SharedGroups::returnAfterRestart() {
  // The broker stopped (or crashed) while members held group messages:
  // their connections are gone, as if each member had left. A QoS 1
  // message goes back to its group, like returnToGroups does. A QoS 2 one
  // stays with the member's durable session: the member may have it
  // already, and only its own session can complete it exactly once (the
  // same packet id, DUP, or PUBREL) when it reconnects; should its session
  // expire first, Sessions::end hands it back.
  sessions_.forEach([&](Session& s) {
    if (!s.has_shared || s.disk_count == 0) return;
    std::vector<persistence::QueueRecord> back;
    // Entries in flight to a member are few (its window), but they can be
    // anywhere in its queue: the whole queue is read, as queueInfo did.
    durable_.store().readQueue(s.clientId(), 0, SIZE_MAX, [&](const persistence::QueueRecord& q) {
      if (!q.group.empty() && q.qos == 1) back.push_back(q);
    });
    for (auto it = back.rbegin(); it != back.rend(); ++it) {
      const persistence::QueueRecord& q = *it;
      SharedGroup* g = byOwner(q.group);
      MessagePtr m = g ? durable_.loadMessage(q.msg_id) : nullptr;
      if (!m) continue;  // the member left the group: it keeps the message
      GroupEntry e;
      e.msg = m;
      e.seq = g->work->next_seq++;
      e.redelivery = true;
      moveToGroup(*g, s, q.seq, *m, e.seq);
      g->work->stored = true;
      if (g->work->disk_count > 0) g->work->handed_back.push_back(e.seq);
      g->work->queue.push_front(std::move(e));
      --s.disk_count;
      s.queued_bytes -= std::min<uint64_t>(s.queued_bytes, q.bytes);
    }
    if (!back.empty())
      LOG_INFO("client %s: %zu unacknowledged shared-subscription messages handed back to their groups after the restart",
               s.clientId().c_str(), back.size());
  });
}

SharedGroup* SharedGroups::byOwner(std::string_view owner) {
  auto it = queues_.find(std::string(owner));
  return it == queues_.end() ? nullptr : it->second->group;
}

void SharedGroups::release(SharedGroup& g, const Delivery& d) {
  if (g.work->inflight) --g.work->inflight;
  if (d.group_seq && durable_.enabled()) durable_.batch().deleteQueue(g.owner(), d.group_seq, d.msg ? d.msg->id : 0);
}

void SharedGroups::dispatchMemberGroupsOf(Session& s) {
  for (const auto& e : s.subscriptions) {
    mqtt::SharedFilter sf;
    if (!mqtt::parseSharedFilter(e.key, sf) || !sf.shared) continue;
    if (SharedGroup* g = tree_.findGroup(sf.filter, sf.group, false)) dispatch(*g);
  }
}

void SharedGroups::returnToGroups(Session& s, bool session_ends) {
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
    if (it->d.qos == 2 && !session_ends && sessions_.durable(s)) continue;
    SharedGroup& g = *it->d.group;
    GroupEntry e;
    e.msg = it->d.msg;
    e.seq = it->d.group_seq;
    e.redelivery = true;
    if (it->d.seq && durable_.enabled()) {
      // The member had taken it over (dispatch): the group's store
      // owns it again, under a new position.
      e.seq = g.work->next_seq++;
      moveToGroup(g, s, it->d.seq, *e.msg, e.seq);
      if (g.work->disk_count > 0) g.work->handed_back.push_back(e.seq);
    }
    if (g.work->inflight) --g.work->inflight;
    g.work->queue.push_front(std::move(e));
    touched.push_back(&g);
    s.queued_bytes -= std::min<uint64_t>(s.queued_bytes, it->d.msg->payload.size());
    it = s.inflight.erase(it);
  }
  if (!touched.empty())
    LOG_INFO("client %s left with %zu unacknowledged shared-subscription messages: handed back to their groups",
             s.clientId().c_str(), touched.size());
  for (SharedGroup* g : touched) dispatch(*g);
}

void SharedGroups::maybeDrop(SharedGroup& g) {
  if (!g.unused()) return;
  for (auto& p : refill_pending_)
    if (p == &g) p = nullptr;
  const std::string filter = g.filter, name = g.name;  // g dies in dropGroup
  tree_.dropGroup(filter, name);
  queues_.erase(SharedGroup::ownerKey(name, filter));  // empty: nothing is lost
}

void SharedGroups::configure(SharedGroup& g) {
  auto it = cfg_.shared_group_strategies.find(g.name);
  g.strategy = it != cfg_.shared_group_strategies.end() ? it->second : cfg_.shared_strategy;
  if (!g.work) {
    auto& q = queues_[g.owner()];
    if (!q) q = std::make_unique<GroupQueue>(g);
    g.work = q.get();
  }
}

void SharedGroups::loadQueues() {
  // Groups exist once the durable members' subscriptions are loaded; their
  // queues come back from the store. Queues of groups no member holds any
  // more are removed.
  std::vector<std::string> live;
  tree_.forEachGroup([&](SharedGroup& g) {
    configure(g);
    const std::string owner = g.owner();
    live.push_back(owner);
    // The queue's first window comes into RAM; the rest waits on disk.
    const auto qi = durable_.store().queueInfo(owner);
    if (qi.count == 0) return;
    g.work->stored = true;
    g.work->next_seq = qi.last_seq + 1;
    g.work->next_read_seq = qi.first_seq;
    g.work->disk_count = qi.count;
    refill(g);
  });
  durable_.store().forEachQueueOwner("\x01share/", [&](std::string_view owner) {
    for (const auto& l : live)
      if (l == owner) return;
    durable_.batch().deleteSession(owner);
  });
}

std::string SharedGroups::report() {
  std::string out;
  tree_.forEachGroup([&](SharedGroup& g) {
    size_t online = 0;
    for (auto& m : g.members) online += m.session->conn != nullptr;
    char line[512];
    snprintf(line, sizeof line,
             "share group %s/%s: strategy %s, members %zu (%zu online), queued %zu, in flight %zu, "
             "delivered %llu, redelivered %llu, dropped %llu\n",
             g.name.c_str(), g.filter.c_str(), shareStrategyName(g.strategy), g.members.size(), online,
             g.queued(), g.work->inflight, static_cast<unsigned long long>(g.work->delivered),
             static_cast<unsigned long long>(g.work->redelivered), static_cast<unsigned long long>(g.work->dropped));
    out += line;
  });
  return out;
}

void SharedGroups::afterCommit() {
  if (refill_pending_.empty()) return;
  std::vector<SharedGroup*> waiting;
  waiting.swap(refill_pending_);
  for (SharedGroup* g : waiting) {
    if (!g) continue;
    g->work->refill_waiting = false;
    dispatch(*g);
  }
}

}  // namespace petrel
