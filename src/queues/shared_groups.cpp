// Shared subscriptions as work queues (see shared_group.h and
// shared_groups.h): enqueueing, dispatch as windows free up, hand-back of
// unacknowledged messages when a member goes away, and the persisted group
// queue with its RAM window.
#include "src/queues/shared_groups.h"

#include <algorithm>

#include "mqtt/topic.h"
#include "src/durable/durable.h"
#include "src/durable/records.h"
#include "src/queues/queue_policy.h"
#include "src/queues/queue_reload.h"
#include "src/queues/share_strategy.h"
#include "src/routing/topic_tree.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/util/log.h"

namespace petrel {

bool SharedGroups::accepts(const SharedGroup& g, const Message& m) {
  return !(g.declared && m.qos == 0 && !g.declared->cfg.qos0_queue);  // qos0: drop
}

void SharedGroups::setClusterLink(ClusterLink link) {
  link_ = std::move(link);
  tree_.forEachGroup([&](SharedGroup& g) {
    if (!g.work) return;
    g.work->cluster = true;
    link_.group(g, true);
  });
}

void SharedGroups::enqueueTaken(SharedGroup& g, const MessagePtr& m, bool redelivery) {
  GroupEntry e;
  e.msg = m;
  e.redelivery = redelivery;
  if (g.declared) {
    const DeclaredQueue* dq = g.declared;
    e.queued_at_ms = clock_.wallMs();
    e.deadline_ms = queueEntryDeadline(e.queued_at_ms, m->expires_at_ms, dq->cfg.message_ttl, dq->cfg.retention);
  }
  g.work->bytes += m->payload.size();
  g.work->queue.push_back(std::move(e));
  ++g.work->taken;
  dispatch(g);
}

int SharedGroups::room(const SharedGroup& g) const {
  // Each member online may be handed this many more at once, at most; the
  // rest waits in the cluster's stream, for whichever node has room first.
  constexpr int kPerMember = 256;
  constexpr int kMax = 4096;
  int room = 0;
  for (const Subscriber& x : g.members) {
    const Session& s = *x.session;
    const Connection* c = s.conn;
    if (!c || !c->connected || c->closing()) continue;
    const size_t used = s.inflight.size();
    room += used >= s.client_receive_max ? 0 : int(std::min<size_t>(s.client_receive_max - used, kPerMember));
    if (room >= kMax) break;
  }
  if (!g.work) return 0;
  return std::max(0, std::min(room, kMax) - int(g.work->queue.size()));
}

void SharedGroups::handBack(SharedGroup& g, bool give_own) {
  if (g.work->taken == 0 && !give_own) {
    if (link_.room) link_.room(g);
    return;
  }
  bool online = false;
  for (const Subscriber& x : g.members) {
    const Connection* c = x.session->conn;
    online = online || (c && c->connected && !c->closing());
  }
  if (!online) {
    // Nobody here can take them: back to the cluster's stream, for a
    // member on another node (or here, once one is back). With
    // `give_own`, what this node queued as its own goes too when another
    // node may want it; it leaves the store once the stream has it. At
    // most kGiveMax at a time: the rest waits on disk for the next round
    // (handBackAll()).
    constexpr size_t kGiveMax = 4096;
    size_t given = 0;
    while (true) {
      for (auto it = g.work->queue.begin(); it != g.work->queue.end() && given < kGiveMax;) {
        if (it->msg->group_token) {
          settleTaken(*it->msg, false);
          --g.work->taken;
        } else if (it->local_only) {
          // Too large for the cluster: for members here, and once the
          // member moved to another node, for nobody.
          if (!g.onlyElsewhere()) {
            ++it;
            continue;
          }
          logTooLarge(g, *it->msg);
          it = dropEntry(g, it, false);
          continue;
        } else if (!give_own || !link_.give || !link_.give(g, it->msg, it->seq)) {
          ++it;
          continue;
        } else {
          ++given;
        }
        g.work->bytes -= std::min<uint64_t>(g.work->bytes, it->msg->payload.size());
        it = g.work->queue.erase(it);
      }
      if (given < kGiveMax && g.work->queue.empty() && g.work->disk_count > 0 && refill(g) > 0) continue;
      break;
    }
  }
  if (link_.room) link_.room(g);
}

void SharedGroups::handBackAll() {
  std::vector<SharedGroup*> done;
  for (auto& [owner, q] : queues_) {
    SharedGroup& g = *q->group;
    if (g.abandoned()) {
      dropAbandoned(g);  // gives nothing of its own to the cluster any more
    } else if (q->cluster && q->queued() > 0) {
      refill(g);
      handBack(g, true);
    }
    // With no member here and nothing left of it, the group goes.
    if ((g.abandoned() || g.handing_over) && g.unused()) done.push_back(&g);
  }
  for (SharedGroup* g : done) maybeDrop(*g);
}

void SharedGroups::putBack(const std::string& owner, const MessagePtr& m, uint64_t seq, bool too_large) {
  SharedGroup* g = byOwner(owner);
  // The group went meanwhile (it had nothing queued), or its last member
  // left; or the message is too large for the cluster, where the group's
  // members now are: the store entry goes too.
  const bool gone = !g || g->abandoned();
  if (gone || (too_large && g->onlyElsewhere())) {
    if (!gone) logTooLarge(*g, *m);
    if (seq && durable_.enabled()) durable_.batch().deleteQueue(owner, seq, m->id);
    if (g) {
      ++g->work->dropped;
      ++stats_.messages_dropped;
      maybeDrop(*g);
    }
    return;
  }
  GroupEntry e;
  e.msg = m;
  e.seq = seq;
  e.local_only = too_large;
  g->work->bytes += m->payload.size();
  g->work->queue.push_front(std::move(e));
  dispatch(*g);
}

bool SharedGroups::enqueue(SharedGroup& g, const MessagePtr& m) {
  const DeclaredQueue* dq = g.declared;
  if (!accepts(g, *m)) return false;
  const uint32_t max = dq && dq->cfg.max_messages ? dq->cfg.max_messages : cfg_.shared_max_queued;
  const uint64_t max_bytes = dq ? dq->cfg.max_bytes : 0;
  auto full = [&] {
    return (max && g.queued() >= max) || (max_bytes && g.work->bytes + m->payload.size() > max_bytes);
  };
  const int64_t now = clock_.wallMs();
  if (full()) {
    // Expired messages at the head of the queue make room first.
    while (!g.work->queue.empty()) {
      const GroupEntry& e = g.work->queue.front();
      if (!queueEntryExpired(e.deadline_ms, e.msg->expires_at_ms, now)) break;
      dropEntry(g, g.work->queue.begin(), true);
    }
  }
  if (full()) {
    ++g.work->dropped;
    ++stats_.messages_dropped;
    ++stats_.dropped_queue_full;
    if (!g.work->drop_logged) {
      g.work->drop_logged = true;
      if (dq)
        LOG_WARN("queue %s (%s): full (max_messages %u, max_bytes %llu), dropping messages", dq->cfg.name.c_str(),
                 g.filter.c_str(), max, static_cast<unsigned long long>(max_bytes));
      else
        LOG_WARN("share group %s/%s: queue full (shared.max_queued_messages = %u), dropping messages",
                 g.name.c_str(), g.filter.c_str(), cfg_.shared_max_queued);
    }
    return false;
  }
  GroupEntry e;
  e.msg = m;
  if (dq) {
    e.queued_at_ms = now;
    e.deadline_ms = queueEntryDeadline(now, m->expires_at_ms, dq->cfg.message_ttl, dq->cfg.retention);
  }
  g.work->bytes += m->payload.size();
  bool stored = false;
  if (durable_.enabled() && m->qos > 0) {
    if (!g.work->stored) {
      if (dq) g.work->stored = true;  // a declared queue is always kept in the store
      for (const auto& x : g.members)
        if (sessions_.durable(*x.session)) g.work->stored = true;
    }
    if (g.work->stored && !durable_.full()) {
      e.seq = g.work->next_seq++;
      putEntry(g, e);
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

void SharedGroups::putEntry(SharedGroup& g, const GroupEntry& e) {
  durable_.batch().putQueue(g.owner(), groupQueueRecord(*e.msg, e.seq, e.queued_at_ms, e.deadline_ms));
}

void SharedGroups::moveToGroup(SharedGroup& g, Session& s, uint64_t member_seq, const GroupEntry& e) {
  putEntry(g, e);
  durable_.batch().addRefs(e.msg->id, 1);  // before the delete drops the member's
  durable_.batch().deleteQueue(s.clientId(), member_seq, e.msg->id);
}

LazyDeque<GroupEntry>::iterator SharedGroups::dropEntry(SharedGroup& g, LazyDeque<GroupEntry>::iterator pos,
                                                        bool expired) {
  if (pos->msg->group_token) {
    settleTaken(*pos->msg, true);  // gone for good: not for another node either
    --g.work->taken;
  }
  if (pos->seq && durable_.enabled()) durable_.batch().deleteQueue(g.owner(), pos->seq, pos->msg->id);
  g.work->bytes -= std::min<uint64_t>(g.work->bytes, pos->msg->payload.size());
  ++stats_.messages_dropped;
  if (expired) {
    ++stats_.messages_expired;
    ++g.work->expired;
  } else {
    ++g.work->dropped;
  }
  auto next = g.work->queue.erase(pos);
  noteIfEmptied(g);
  return next;
}

void SharedGroups::logTooLarge(const SharedGroup& g, const Message& m) {
  LOG_WARN("share group %s/%s: a message on %s (%zu bytes) is larger than the cluster's NATS servers take, and the "
           "group's member moved to another node: dropped",
           g.name.c_str(), g.filter.c_str(), m.topic.c_str(), m.payload.size());
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
                      [&](persistence::QueueRecord& q) { recs.push_back(std::move(q)); });
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
  // The entries handed back are in RAM already; the messages of the rest
  // are read in one transaction.
  std::vector<uint64_t> ids;
  std::vector<bool> in_ram(recs.size());
  ids.reserve(recs.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    auto hb = std::find(g.work->handed_back.begin(), g.work->handed_back.end(), recs[i].seq);
    if (hb != g.work->handed_back.end()) {
      g.work->handed_back.erase(hb);
      in_ram[i] = true;
    } else {
      ids.push_back(recs[i].msg_id);
    }
  }
  std::vector<MessagePtr> msgs = durable_.loadMessages(ids);
  size_t next = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    const auto& q = recs[i];
    g.work->next_read_seq = q.seq + 1;
    if (in_ram[i]) continue;
    if (g.work->disk_count) --g.work->disk_count;
    GroupEntry e;
    e.msg = std::move(msgs[next++]);
    e.seq = q.seq;
    e.queued_at_ms = q.queued_at_ms;
    e.deadline_ms = q.deadline_ms;
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
    if (queueEntryExpired(e.deadline_ms, e.msg->expires_at_ms, now)) {
      // [MQTT-3.3.2-5] expired in the group queue (or past a declared
      // queue's retention or message_ttl): no member gets it.
      dropEntry(g, pos, true);
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
        ++stats_.dropped_not_authorized;
        dropEntry(g, pos, false);
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
    d.group_place.set({&g, e.seq, e.queued_at_ms, e.deadline_ms});
    const bool again = e.redelivery;
    g.work->bytes -= std::min<uint64_t>(g.work->bytes, e.msg->payload.size());
    if (e.msg->group_token) --g.work->taken;
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
    const bool take_over = d.groupSeq() && sessions_.durable(s) && s.stored;
    if (take_over) d.seq = s.next_seq++;
    const uint64_t msg_id = d.msg->id, group_seq = d.groupSeq();
    if (!sessions_.sendNew(s, *s.conn, std::move(d))) continue;  // forget() released it
    if (take_over) {
      InflightOut& f = s.inflight.back();
      f.d.clearGroupSeq();
      durable_.batch().addRefs(msg_id, 1);  // before the delete drops the group's
      durable_.batch().deleteQueue(g.owner(), group_seq, msg_id);
    }
  }
  if (g.work->cluster) handBack(g, false);
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
      e.queued_at_ms = q.queued_at_ms;
      e.deadline_ms = q.deadline_ms;
      moveToGroup(*g, s, q.seq, e);
      g->work->stored = true;
      g->work->bytes += m->payload.size();
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
  auto it = queues_.find(owner);
  return it == queues_.end() ? nullptr : it->second->group;
}

void SharedGroups::release(SharedGroup& g, const Delivery& d) {
  if (g.work->inflight) --g.work->inflight;
  if (d.msg) settleTaken(*d.msg, true);
  if (d.groupSeq() && durable_.enabled()) durable_.batch().deleteQueue(g.owner(), d.groupSeq(), d.msg ? d.msg->id : 0);
  // The last member left while this was in flight: what waited on disk
  // goes with the last of it, and the group after it (the caller still
  // holds it now).
  if (g.abandoned() && g.work->inflight == 0) dropAbandoned(g);
  noteIfEmptied(g);
}

void SharedGroups::noteIfEmptied(const SharedGroup& g) {
  if (!g.unused()) return;
  std::string owner = g.owner();
  if (emptied_.empty() || emptied_.back() != owner) emptied_.push_back(std::move(owner));
}

void SharedGroups::dropEmptied() {
  if (emptied_.empty()) return;
  std::vector<std::string> owners;
  owners.swap(emptied_);
  for (const std::string& owner : owners) {
    SharedGroup* g = byOwner(owner);
    if (g && g->unused()) maybeDrop(*g);
  }
}

void SharedGroups::dispatchMemberGroupsOf(Session& s) {
  forEachGroupOf(s, [&](SharedGroup& g) { dispatch(g); });
}

void SharedGroups::forEachGroupOf(const Session& s, const std::function<void(SharedGroup&)>& f) {
  for (const auto& e : s.subscriptions) {
    std::string_view qname;
    if (parseQueueFilter(e.key, qname)) {
      if (DeclaredQueue* q = findQueue(qname))
        for (SharedGroup* g : q->groups) f(*g);
      continue;
    }
    mqtt::SharedFilter sf;
    if (!mqtt::parseSharedFilter(e.key, sf) || !sf.shared) continue;
    if (SharedGroup* g = tree_.findGroup(sf.filter, sf.group, false)) f(*g);
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
    if (!it->d.group() || it->released) continue;
    // A QoS 2 message stays with a durable member's session while it
    // lasts: the member may have it (PUBREC on its way) and still holds its
    // packet id, so only that session can complete it exactly once, and
    // the id must not be reused for another message meanwhile.
    if (it->d.qos == 2 && !session_ends && sessions_.durable(s)) continue;
    const GroupPlace& place = *it->d.group_place.get();
    SharedGroup& g = *place.group;
    GroupEntry e;
    e.msg = it->d.msg;
    e.seq = place.seq;
    e.redelivery = true;
    e.queued_at_ms = place.queued_at_ms;
    e.deadline_ms = place.deadline_ms;
    g.work->bytes += e.msg->payload.size();
    if (it->d.seq && durable_.enabled()) {
      // The member had taken it over (dispatch): the group's store
      // owns it again, under a new position.
      e.seq = g.work->next_seq++;
      moveToGroup(g, s, it->d.seq, e);
      if (g.work->disk_count > 0) g.work->handed_back.push_back(e.seq);
    }
    if (g.work->inflight) --g.work->inflight;
    if (e.msg->group_token) ++g.work->taken;
    g.work->queue.push_front(std::move(e));
    touched.push_back(&g);
    s.queued_bytes -= std::min<uint64_t>(s.queued_bytes, it->d.msg->payload.size());
    it = s.inflight.erase(it);
  }
  if (!touched.empty())
    LOG_INFO("client %s left with %zu unacknowledged shared-subscription messages: handed back to their groups",
             s.clientId().c_str(), touched.size());
  for (SharedGroup* g : touched) {
    if (g->abandoned()) dropAbandoned(*g);  // its last member had left already
    dispatch(*g);
  }
  // Its groups here may have no member online now: what they queued as
  // their own goes to members on other nodes (a cluster's groups).
  if (link_.give) forEachGroupOf(s, [&](SharedGroup& g) {
    if (g.work && g.work->cluster && g.work->queued() > 0) handBack(g, true);
  });
}

void SharedGroups::dropAbandoned(SharedGroup& g) {
  GroupQueue& w = *g.work;
  // A cluster's group: what it took from the cluster's stream goes back
  // there (members on other nodes, or the next member anywhere, take it);
  // what it queued as this node's own goes as it would without a cluster.
  if (w.cluster && w.taken > 0) handBack(g, false);
  const uint64_t n = w.queued();
  if (n == 0) return;
  while (!w.queue.empty()) dropEntry(g, w.queue.begin(), false);
  // The entries still on disk: with nothing in flight, every entry left
  // under the group's key is one of them, and one delete takes them all
  // with their messages' references. Otherwise they go with the last
  // message in flight (release).
  if (w.disk_count > 0 && w.inflight == 0) {
    if (durable_.enabled()) durable_.batch().deleteSession(g.owner());
    w.dropped += w.disk_count;
    stats_.messages_dropped += w.disk_count;
    w.disk_count = 0;
    w.handed_back.clear();
    w.next_read_seq = w.next_seq;
    w.bytes = 0;
  }
  if (n > w.queued())
    LOG_NOTICE("share group %s/%s: its last member left; %llu queued messages dropped with its subscription",
               g.name.c_str(), g.filter.c_str(), static_cast<unsigned long long>(n - w.queued()));
}

void SharedGroups::maybeDrop(SharedGroup& g) {
  if (g.abandoned()) dropAbandoned(g);
  if (!g.unused()) return;
  for (auto& p : refill_pending_)
    if (p == &g) p = nullptr;
  if (g.work && g.work->cluster && link_.group) link_.group(g, false);
  const std::string filter = g.filter, name = g.name;  // g dies in dropGroup
  tree_.dropGroup(filter, name);
  queues_.erase(SharedGroup::ownerKey(name, filter));  // empty: nothing is lost
}

void SharedGroups::configure(SharedGroup& g) {
  auto it = cfg_.shared_group_strategies.find(g.name);
  g.strategy = it != cfg_.shared_group_strategies.end() ? it->second : cfg_.shared_strategy;
  if (g.declared && g.declared->cfg.strategy) g.strategy = *g.declared->cfg.strategy;
  if (!g.work) {
    auto& q = queues_[g.owner()];
    if (!q) q = std::make_unique<GroupQueue>(g);
    g.work = q.get();
    if (link_.group) {
      g.work->cluster = true;
      link_.group(g, true);
    }
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
    if (g.declared) g.work->stored = true;
    if (qi.count == 0) return;
    g.work->stored = true;
    g.work->next_seq = qi.last_seq + 1;
    g.work->next_read_seq = qi.first_seq;
    g.work->disk_count = qi.count;
    g.work->bytes = qi.bytes;
    refill(g);
  });
  std::vector<std::string> orphans;
  durable_.store().forEachQueueOwner("\x01share/", [&](std::string_view owner) {
    for (const auto& l : live)
      if (l == owner) return;
    orphans.emplace_back(owner);
  });
  for (const auto& owner : orphans) {
    // The queue of a declared queue (its entries carry when they were
    // queued) stays when the queue was removed from the configuration:
    // an ordinary share group until its messages are consumed or expire.
    // Other groups no member holds go, as they always did.
    bool was_declared = false;
    durable_.store().readQueue(owner, 0, 1, [&](const persistence::QueueRecord& q) { was_declared = q.queued_at_ms != 0; });
    if (was_declared) keepRemovedQueue(owner);
    else durable_.batch().deleteSession(owner);
  }
}

void SharedGroups::keepRemovedQueue(std::string_view owner) {
  const std::string_view rest = owner.substr(std::string_view("\x01share/").size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= rest.size()) {
    durable_.batch().deleteSession(owner);
    return;
  }
  const std::string name(rest.substr(0, slash)), filter(rest.substr(slash + 1));
  SharedGroup* g = tree_.findGroup(filter, name, true);
  g->leftover_queue = true;
  configure(*g);
  const auto qi = durable_.store().queueInfo(owner);
  g->work->stored = true;
  g->work->next_seq = qi.last_seq + 1;
  g->work->next_read_seq = qi.first_seq;
  g->work->disk_count = qi.count;
  g->work->bytes = qi.bytes;
  refill(*g);
  LOG_NOTICE("queue %s (%s) is no longer declared: its %llu stored messages are kept until consumed or expired "
             "(as the share group $share/%s/%s)",
             name.c_str(), filter.c_str(), static_cast<unsigned long long>(qi.count), name.c_str(), filter.c_str());
}

void SharedGroups::declareQueues() {
  for (const QueueConfig& qc : cfg_.queues) declareQueue(qc);
}

DeclaredQueue& SharedGroups::declareQueue(const QueueConfig& qc) {
  auto& q = declared_[qc.name];
  q = std::make_unique<DeclaredQueue>();
  q->cfg = qc;
  for (size_t i = 0; i < qc.filters.size(); ++i) declareGroup(*q, i);
  std::string filters;
  for (const auto& f : qc.filters) filters += (filters.empty() ? "" : ", ") + f;
  LOG_INFO("queue %s declared: filled by %s (retention %us, message_ttl %us, qos0 %s)", qc.name.c_str(),
           filters.c_str(), qc.retention, qc.message_ttl, qc.qos0_queue ? "queued" : "dropped");
  return *q;
}

SharedGroup& SharedGroups::declareGroup(DeclaredQueue& q, size_t filter_index) {
  SharedGroup* g = tree_.findGroup(q.cfg.filters[filter_index], q.cfg.name, true);
  g->declared = &q;
  g->filter_index = filter_index;
  configure(*g);
  if (durable_.enabled()) g->work->stored = true;
  q.groups.push_back(g);
  return *g;
}

void SharedGroups::undeclareGroup(SharedGroup& g) {
  // Members through `$queue/<name>` leave (their subscription stays, with
  // no effect, as after a restart without the queue); members through
  // `$share/<name>/<filter>` stay.
  const std::string name = g.name, filter = g.filter;
  const std::string queue_key = std::string(kQueuePrefix) + name, share_key = "$share/" + name + "/" + filter;
  std::vector<Session*> leaving;
  for (const auto& m : g.members)
    if (m.session->subscriptions.find(queue_key) && !m.session->subscriptions.find(share_key))
      leaving.push_back(m.session);
  for (Session* s : leaving) tree_.unsubscribe(filter, name, s);
  g.declared = nullptr;
  g.filter_index = 0;
  g.leftover_queue = true;
  configure(g);  // the strategy of an ordinary group
  const size_t depth = g.queued(), inflight = g.work->inflight;
  if (depth || inflight)
    LOG_NOTICE("queue %s (%s) is no longer declared: its %zu queued messages (%zu in flight) are kept until "
               "consumed or expired (as the share group $share/%s/%s)",
               name.c_str(), filter.c_str(), depth, inflight, name.c_str(), filter.c_str());
  else
    LOG_NOTICE("queue %s (%s) is no longer declared: nothing was queued", name.c_str(), filter.c_str());
  maybeDrop(g);  // g may be gone
}

void SharedGroups::joinQueueMembers(DeclaredQueue& q, SharedGroup& g) {
  const std::string queue_key = std::string(kQueuePrefix) + q.cfg.name, share_key = "$share/" + g.name + "/" + g.filter;
  sessions_.forEach([&](Session& s) {
    const SubscriptionOptions* o = s.subscriptions.find(queue_key);
    if (!o || s.subscriptions.find(share_key)) return;
    tree_.subscribe(g.filter, g.name, &s, *o);
    s.has_shared = true;
  });
}

void SharedGroups::applyQueues(const std::vector<QueueConfig>& next) {
  std::vector<QueueConfig> before;
  for (const auto& e : declared_) before.push_back(e.second->cfg);
  const QueueChanges ch = diffQueues(before, next);
  auto listed = [](const std::vector<std::string>& v, const std::string& name) {
    return std::find(v.begin(), v.end(), name) != v.end();
  };
  for (const std::string& name : ch.removed) {
    auto it = declared_.find(name);
    const std::vector<SharedGroup*> groups = it->second->groups;
    for (SharedGroup* g : groups) undeclareGroup(*g);
    declared_.erase(it);
  }
  std::vector<SharedGroup*> touched;
  for (const QueueConfig& qc : next) {
    if (listed(ch.added, qc.name)) {
      DeclaredQueue& q = declareQueue(qc);
      for (SharedGroup* g : q.groups) {
        joinQueueMembers(q, *g);
        touched.push_back(g);
      }
      continue;
    }
    if (!listed(ch.changed, qc.name)) continue;
    DeclaredQueue& q = *findQueue(qc.name);
    LOG_NOTICE("queue %s changed: %s (for messages queued from now on)", qc.name.c_str(),
               describeQueueChange(q.cfg, qc).c_str());
    const std::vector<SharedGroup*> old = q.groups;
    q.cfg = qc;
    q.groups.clear();
    for (size_t i = 0; i < qc.filters.size(); ++i) {
      auto kept = std::find_if(old.begin(), old.end(),
                               [&](const SharedGroup* g) { return g->filter == qc.filters[i]; });
      if (kept == old.end()) {
        SharedGroup& g = declareGroup(q, i);
        joinQueueMembers(q, g);
        touched.push_back(&g);
        continue;
      }
      SharedGroup* g = *kept;
      g->filter_index = i;
      configure(*g);  // the queue's strategy may have changed
      q.groups.push_back(g);
      touched.push_back(g);
    }
    for (SharedGroup* g : old)
      if (std::find(q.groups.begin(), q.groups.end(), g) == q.groups.end()) undeclareGroup(*g);
  }
  // New members, or a new strategy: queued messages may go now.
  for (SharedGroup* g : touched) dispatch(*g);
  LOG_NOTICE("queues reloaded: %zu added, %zu removed, %zu changed, %zu declared", ch.added.size(),
             ch.removed.size(), ch.changed.size(), declared_.size());
}

DeclaredQueue* SharedGroups::findQueue(std::string_view name) {
  auto it = declared_.find(name);
  return it == declared_.end() ? nullptr : it->second.get();
}

void SharedGroups::joinQueue(Session& s, DeclaredQueue& q, const SubscriptionOptions& o,
                             std::vector<SharedGroup*>* joined) {
  for (SharedGroup* g : q.groups) {
    tree_.subscribe(g->filter, g->name, &s, o);
    if (joined) joined->push_back(g);
  }
  s.has_shared = true;
}

void SharedGroups::leaveQueue(Session& s, std::string_view name, bool all) {
  DeclaredQueue* q = findQueue(name);
  if (!q) return;
  for (SharedGroup* g : q->groups) {
    // Still a member through `$share/<name>/<filter>`: stays.
    if (!all && s.subscriptions.find("$share/" + g->name + "/" + g->filter)) continue;
    tree_.unsubscribe(g->filter, g->name, &s);
  }
}

bool SharedGroups::memberThroughQueue(const Session& s, const SharedGroup& g) const {
  return g.declared && s.subscriptions.find(std::string(kQueuePrefix) + g.name);
}

void SharedGroups::oncePerQueue(std::vector<SharedGroup*>& gs) {
  for (size_t i = 0; i < gs.size(); ++i) {
    const DeclaredQueue* q = gs[i]->declared;
    if (!q) continue;
    for (size_t j = i + 1; j < gs.size();) {
      if (gs[j]->declared != q) {
        ++j;
        continue;
      }
      if (gs[j]->filter_index < gs[i]->filter_index) gs[i] = gs[j];
      gs.erase(gs.begin() + static_cast<std::ptrdiff_t>(j));
    }
  }
}

QueueStats SharedGroups::queueStats(const DeclaredQueue& q) const {
  QueueStats st;
  const int64_t now = clock_.wallMs();
  int64_t oldest = 0;
  std::vector<const Session*> seen;
  for (const SharedGroup* g : q.groups) {
    const GroupQueue& w = *g->work;
    st.depth += w.queued();
    st.bytes += w.bytes;
    st.inflight += w.inflight;
    st.delivered += w.delivered;
    st.dropped += w.dropped;
    st.expired += w.expired;
    for (const GroupEntry& e : w.queue)
      if (e.queued_at_ms && (!oldest || e.queued_at_ms < oldest)) oldest = e.queued_at_ms;
    for (const auto& m : g->members) {
      if (std::find(seen.begin(), seen.end(), m.session) != seen.end()) continue;
      seen.push_back(m.session);
      st.online += m.session->conn != nullptr;
    }
  }
  st.consumers = seen.size();
  if (oldest && oldest < now) st.oldest_age_s = static_cast<uint64_t>(now - oldest) / 1000;
  return st;
}

std::string SharedGroups::report() {
  std::string out;
  tree_.forEachGroup([&](SharedGroup& g) {
    size_t online = 0;
    for (auto& m : g.members) online += m.session->conn != nullptr;
    char line[512];
    snprintf(line, sizeof line,
             "%s %s/%s: strategy %s, members %zu (%zu online), queued %zu, in flight %zu, "
             "delivered %llu, redelivered %llu, dropped %llu\n",
             g.declared ? "queue (share group)" : "share group", g.name.c_str(), g.filter.c_str(), shareStrategyName(g.strategy), g.members.size(), online,
             g.queued(), g.work->inflight, static_cast<unsigned long long>(g.work->delivered),
             static_cast<unsigned long long>(g.work->redelivered), static_cast<unsigned long long>(g.work->dropped));
    out += line;
  });
  return out;
}

size_t SharedGroups::expireHeads(size_t budget) {
  const int64_t now = clock_.wallMs();
  size_t gone = 0;
  for (auto& [owner, q] : queues_) {
    SharedGroup& g = *q->group;
    while (gone < budget) {
      // The head may be on disk only: the next window comes in.
      if (q->queue.empty() && (q->disk_count == 0 || refill(g) == 0)) break;
      const GroupEntry& e = q->queue.front();
      if (!queueEntryExpired(e.deadline_ms, e.msg->expires_at_ms, now)) break;
      dropEntry(g, q->queue.begin(), true);  // the group goes at the end of the turn if emptied
      ++gone;
    }
  }
  return gone;
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
