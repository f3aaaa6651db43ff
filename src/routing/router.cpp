#include "src/routing/router.h"

#include <algorithm>

#include "mqtt/topic.h"
#include "src/durable/durable.h"
#include "src/queues/queue_policy.h"
#include "src/queues/shared_groups.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"

namespace petrel {

RouteResult Router::route(const MessagePtr& m, uint32_t extra_refs) {
  if (on_route_) on_route_(m);
  const uint64_t gen = ++match_gen_;
  std::vector<Target> targets = std::move(targets_);
  std::vector<SharedGroup*> groups = std::move(groups_matched_);
  targets.clear();
  groups.clear();
  // The lists (and their capacity) go back for the next call; a list grown
  // by a huge fan-out is let go rather than kept for good.
  struct GiveBack {
    Router& r;
    std::vector<Target>& t;
    std::vector<SharedGroup*>& g;
    ~GiveBack() {
      constexpr size_t kKeep = 4096;
      if (t.capacity() <= kKeep && t.capacity() > r.targets_.capacity()) r.targets_ = std::move(t);
      if (g.capacity() <= kKeep && g.capacity() > r.groups_matched_.capacity()) r.groups_matched_ = std::move(g);
    }
  } give_back{*this, targets, groups};
  tree_.match(
      m->topic,
      [&](const Subscriber& sub) {
        Session* s = sub.session;
        // [MQTT-3.8.3-3] No Local: not back to the publisher (never back
        // to a bridge that sent it).
        if ((sub.opts.no_local || s->peer_bridge) && s->clientId() == m->origin) return;
        // A message that crossed a bridge does not cross another one.
        if (s->bridge && m->from_bridge) return;
        if (s->match_gen != gen) {
          s->match_gen = gen;
          s->match_index = targets.size();
          targets.push_back({s, sub.opts.qos, sub.opts.retain_as_published || s->peer_bridge, {}});
          if (sub.opts.subscription_id) targets.back().ids.push_back(sub.opts.subscription_id);
          return;
        }
        Target& t = targets[s->match_index];
        t.qos = std::max(t.qos, sub.opts.qos);
        t.retain_as_published = t.retain_as_published || sub.opts.retain_as_published;
        if (sub.opts.subscription_id) t.ids.push_back(sub.opts.subscription_id);
      },
      [&](SharedGroup& g) {
        // A shared subscription is a delivery of its own, never merged with
        // the session's other subscriptions: the group queues it (below,
        // where a group without members here is left out).
        groups.push_back(&g);
      });
  // A declared queue takes a message once, however many of its filters match.
  if (groups.size() > 1) SharedGroups::oncePerQueue(groups);
  // Encode once (PublishCache) when the message has several receivers.
  struct EncodeOnce {
    PublishCache* cache;
    ~EncodeOnce() {
      if (cache) cache->end();
    }
  } encode_once{targets.size() + groups.size() > 1 ? &sessions_.publishCache() : nullptr};
  if (encode_once.cache) encode_once.cache->begin(*m);
  uint32_t stored = 0;
  // A QoS 1 message kept only for durable receivers that get it at once can
  // be acknowledged to its publisher when they have all acknowledged it.
  // Made only when a durable session is among the receivers.
  AckGatePtr gate;
  if (durable_.enabled() && m->qos == 1 && extra_refs == 0) {
    for (const Target& t : targets) {
      if (sessions_.durable(*t.session)) {
        gate = std::make_shared<AckGate>();
        break;
      }
    }
  }
  bool must_commit = false;  // a stored copy waits in a queue: the commit decides
  size_t matched_groups = groups.size();
  for (SharedGroup*& g : groups) {
    if (on_group_ && g->work->cluster && on_group_(*g, m)) {
      g = nullptr;  // handed to the cluster
      continue;
    }
    if (g->abandoned()) {
      // Its last member left: it is no subscription any more. A cluster's
      // group is one only where the cluster took the message (members on
      // other nodes); here nobody of the group is left to take it.
      g = nullptr;
      --matched_groups;
      continue;
    }
    if (groups_.enqueue(*g, m)) {
      ++stored;
      must_commit = true;  // the group queue holds it until a member acks
    }
  }
  for (Target& t : targets) {
    if (m->durable_only && !sessions_.durable(*t.session)) continue;
    if (m->adopted_from && t.session->adopted_from != m->adopted_from) continue;
    // ACL: read access of the receiving client, checked at delivery time.
    if (!sessions_.mayReceive(*t.session, m->topic)) continue;
    Delivery d;
    d.msg = m;
    d.qos = std::min(m->qos, t.qos);  // [MQTT-3.8.4-8] downgrade to granted
    d.retain = t.retain_as_published && m->retain;  // [MQTT-3.3.1-12/13]
    d.subscription_ids = std::move(t.ids);
    switch (sessions_.deliver(*t.session, std::move(d), gate)) {
      case DeliverOutcome::NotStored: break;
      case DeliverOutcome::StoredInGate: ++stored; break;
      case DeliverOutcome::Stored: ++stored; must_commit = true; break;
    }
  }
  RouteResult r;
  r.matched = targets.size() + matched_groups;
  r.stored = stored;
  if (gate && !must_commit && gate->pending() > 0) r.early_ack = std::move(gate);
  // One record for the message, referenced by every durable queue entry
  // (and the retained slot) that holds it: stored once, not per receiver.
  if (durable_.enabled() && stored + extra_refs > 0) durable_.putMessage(*m, stored + extra_refs);
  // The groups hand the message to their members only now. A member may
  // take it from the group's store entry at once (a QoS 0 member needs no
  // acknowledgement): that drops the entry's reference, which must come
  // after the record that counts it, or the record would keep a count
  // nobody holds and stay in the store for good.
  for (SharedGroup* g : groups)
    if (g) groups_.dispatch(*g);
  return r;
}

uint32_t Router::retain(const MessagePtr& m) {
  retained_.set(m);
  if (on_retain_ && !m->from_cluster) on_retain_(m);
  if (!durable_.enabled()) return 0;
  // [MQTT-3.3.1-6/7] an empty payload clears the slot.
  durable_.batch().setRetained(m->topic, m->payload.empty() ? 0 : m->id);
  return m->payload.empty() ? 0 : 1;
}

void Router::sendRetained(Session& s, const std::string& filter, const SubscriptionOptions& o) {
  const int64_t now = clock_.wallMs();
  std::vector<std::string> expired;
  retained_.forEachMatch(filter, [&](const MessagePtr& m) {
    if (m->expires_at_ms && m->expires_at_ms <= now) {
      expired.push_back(m->topic);  // [MQTT-3.3.2-5] not sent, and removed below
      return;
    }
    if (!sessions_.mayReceive(s, m->topic)) return;  // ACL read access, per message
    Delivery d;
    d.msg = m;
    d.qos = std::min(m->qos, o.qos);
    d.retain = true;  // [MQTT-3.3.1-8] retained messages sent on subscribe
    if (o.subscription_id) d.subscription_ids.push_back(o.subscription_id);
    // Kept in a durable session's queue, the message has one more holder
    // than the retained slot: a reference to its record, which the queue
    // entry's delete (acknowledged, expired, the session gone) takes back.
    // Without it, clearing the slot would take the message from under the
    // entry, and the entry's delete would take it from the slot.
    if (sessions_.deliver(s, std::move(d)) != DeliverOutcome::NotStored && durable_.enabled())
      durable_.batch().addRefs(m->id, 1);
  });
  for (const auto& topic : expired) {
    retained_.erase(topic);
    if (durable_.enabled()) durable_.batch().setRetained(topic, 0);
  }
}

void Router::unsubscribe(Session& s, std::string_view key) { remove(s, key, false); }

void Router::unsubscribeAll(Session& s, bool moved_away) {
  for (const auto& e : s.subscriptions) remove(s, e.key, true, moved_away);
}

void Router::remove(Session& s, std::string_view key, bool all, bool moved_away) {
  std::string_view queue;
  if (parseQueueFilter(key, queue)) {  // `$queue/<name>`: every group of the queue
    groups_.leaveQueue(s, queue, all);
    return;
  }
  mqtt::SharedFilter sf;
  mqtt::parseSharedFilter(key, sf);
  SharedGroup* g = sf.shared ? tree_.findGroup(sf.filter, sf.group, false) : nullptr;
  // Still a member of a declared queue's group through `$queue/<name>`.
  if (g && !all && groups_.memberThroughQueue(s, *g)) return;
  tree_.unsubscribe(sf.shared ? sf.filter : key, sf.group, &s);
  if (g && moved_away && g->members.empty()) g->handing_over = true;
  if (g) groups_.maybeDrop(*g);
}

}  // namespace petrel
