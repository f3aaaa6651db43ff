#include "src/cluster/session_moves.h"

#include <algorithm>

#include "src/cluster/adoption.h"
#include "src/cluster/cluster.h"
#include "src/durable/durable.h"
#include "src/durable/records.h"
#include "src/routing/router.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/timers/loop_timers.h"
#include "src/transport/connection.h"
#include "src/util/log.h"

namespace petrel {

namespace {
constexpr uint64_t kRetryMs = 200;  // Busy, Wait: asked again after
constexpr uint64_t kTickMs = 50;
}  // namespace

SessionMoves::SessionMoves(const Parts& p)
    : cluster_(p.cluster),
      sessions_(p.sessions),
      router_(p.router),
      durable_(p.durable),
      timers_(p.timers),
      clock_(p.clock),
      adoption_(p.adoption),
      timer_(&SessionMoves::onTimer, this) {}

SessionMoves::~SessionMoves() = default;

// The ticket whose commit covers everything written so far: the batch
// being filled if it has anything (committed without delay), else the
// last one handed over.
uint64_t SessionMoves::writtenTicket() {
  if (durable_.batch().empty()) return durable_.ticket() - 1;
  return durable_.awaitedTicket();
}

bool SessionMoves::movingIn(const std::string& client_id) const {
  return in_by_client_.count(client_id) != 0 || adoption_.holding(client_id);
}

void SessionMoves::onTimer(Timer& t) { t.owner<SessionMoves>()->tick(); }

void SessionMoves::arm() {
  // The stream's "settled" marks are asked for while a session moves away.
  cluster_.watchStreamSettled(!out_.empty());
  if (!timer_.armed() && (!in_.empty() || !out_.empty() || !pending_.empty())) timers_.armAfter(timer_, kTickMs);
}

bool SessionMoves::moveIn(const std::string& client_id, uint64_t ticket) {
  if (!cluster_.jetstream() || !durable_.enabled()) return false;
  if (auto it = in_by_client_.find(client_id); it != in_by_client_.end()) {
    In& in = in_[it->second];
    // Installed: the session is here, and what the old node queued after
    // the snapshot does not hold the CONNECT up (its answer may be
    // awaited for seconds).
    if (in.state == In::State::Grace || in.state == In::State::Tail) return false;
    // The same client again while its session moves: the newer CONNECT
    // waits for it, the older connection closes.
    const uint64_t old = in.ticket;
    in.ticket = ticket;
    if (old && on_done_) on_done_(old, true);
    return true;
  }
  if (out_.count(client_id)) return false;  // moving away from here: it stays (see the README)
  // Its session comes with a down node's, being taken here.
  if (adoption_.waitFor(client_id, ticket)) return true;
  const bool linked = cluster_.movesSessions();
  const Cluster::Owner* owner = linked ? cluster_.ownerElsewhere(client_id) : nullptr;
  const Cluster::Owner* down = nullptr;
  if (!owner) {
    // The node the registry names is not up: once known to be down, its
    // sessions are taken (it may be restarting, or this node has not
    // heard from it yet). Or this node's link to NATS is down: the CONNECT
    // waits for it (kSilentMs at most), as the registry last said.
    down = cluster_.registeredOwner(client_id);
    if (!down || (linked && !adoption_.possible())) return false;
    owner = down;
  }
  const uint64_t move = next_move_++;
  In& in = in_[move];
  in.move = move;
  in.client_id = client_id;
  in.from_node = owner->node;
  in.from_token = owner->token;
  in.from_name = owner->name;
  in.ticket = ticket;
  in.started_ms = static_cast<int64_t>(timers_.now());
  in_by_client_[client_id] = move;
  if (down && linked && cluster_.nodeDown(down->token)) {
    toAdopter(in, down->token, down->name);
  } else if (down) {
    if (linked)
      LOG_INFO("client %s: node %s, which has its session, is not up; waiting to learn whether it is down",
               client_id.c_str(), in.from_name.c_str());
    else
      LOG_INFO("client %s: node %s has its session, and this node's link to NATS is down; waiting for it",
               client_id.c_str(), in.from_name.c_str());
    in.silent = true;
    in.retry_at_ms = in.started_ms + 500;
  } else {
    LOG_INFO("client %s: taking its session from node %s", client_id.c_str(), in.from_name.c_str());
    ask(in);
  }
  arm();
  return true;
}

void SessionMoves::toAdopter(In& in, const std::string token, const std::string name) {
  const std::string adopter = cluster_.adopterFor(token);
  in.down_token = token;
  in.down_name = name;
  if (adopter == cluster_.ownToken()) {
    if (!adoption_.begin(token, name)) {
      ++counters_.failed;
      LOG_WARN("client %s: node %s is down and its sessions cannot be taken here (no replica of its store); it "
               "connects without its session", in.client_id.c_str(), name.c_str());
      in.cannot_adopt = true;  // the CONNECT goes on at the next tick
      return;
    }
    // Taken here: the CONNECT goes on once they are.
    const uint64_t ticket = in.ticket;
    const std::string client_id = in.client_id;
    in_by_client_.erase(in.client_id);
    in_.erase(in.move);
    LOG_INFO("client %s: node %s is down; its session comes with the others this node takes", client_id.c_str(),
             name.c_str());
    if (ticket) adoption_.wait(token, client_id, ticket);
    return;
  }
  LOG_INFO("client %s: node %s is down; node %s takes its sessions, and this one takes the client's from there",
           in.client_id.c_str(), name.c_str(), adopter.c_str());
  in.from_token = adopter;
  in.from_name = adopter;
  in.from_node = 0;
  in.patient = true;
  in.silent = false;
  in.waiting_answer = false;
  in.retry_at_ms = 0;
  in.started_ms = static_cast<int64_t>(timers_.now());
  ask(in);
}

void SessionMoves::unanswered(uint64_t move) {
  auto it = in_.find(move);
  if (it == in_.end() || !it->second.waiting_answer) return;
  In& in = it->second;
  cluster_.unanswered(in.from_token);
  if (in.state != In::State::Asking) return;
  // Nothing listens there, and no replica to take the session from: the
  // CONNECT goes on without it.
  if (!adoption_.possible()) return finishIn(move, false);
  in.waiting_answer = false;
  in.silent = true;
  in.retry_at_ms = static_cast<int64_t>(timers_.now()) + 500;
}

void SessionMoves::discardElsewhere(const std::string& client_id) {
  if (!cluster_.movesSessions()) return;
  const Cluster::Owner* owner = cluster_.ownerElsewhere(client_id);
  if (!owner) return;
  cluster::encodeMoveClient({cluster::MoveKind::Discard, 0, cluster_.nodeId()}, client_id, buf_);
  cluster_.sendMove(owner->token, buf_);
}

void SessionMoves::ask(In& in) {
  cluster::MoveTake t;
  t.phase = in.phase;
  t.from = in.next;
  t.reply_to = cluster_.ownToken();
  t.client_id = in.client_id;
  cluster::encodeMoveTake({cluster::MoveKind::Take, in.move, cluster_.nodeId()}, t, buf_);
  cluster_.sendMoveRequest(in.from_token, buf_, in.move);
  in.waiting_answer = true;
  in.asked_ms = static_cast<int64_t>(timers_.now());
}

void SessionMoves::onMessage(std::string_view body) {
  cluster::MoveHeader h;
  if (!cluster::decodeMoveHeader(body, h)) {
    LOG_WARN("cluster: a session move message no Petrel node sends; dropped");
    return;
  }
  switch (h.kind) {
    case cluster::MoveKind::Take: onTake(h, body); break;
    case cluster::MoveKind::Part: onPart(h, body); break;
    case cluster::MoveKind::Resume: onResume(h, body); break;
    case cluster::MoveKind::Finish:
    case cluster::MoveKind::Discard: {
      std::string client_id;
      if (!cluster::decodeMoveClient(body, client_id)) {
        LOG_WARN("cluster: a session move message no Petrel node sends; dropped");
        return;
      }
      if (h.kind == cluster::MoveKind::Finish) onFinish(h, client_id);
      else onDiscard(client_id);
      break;
    }
  }
}

std::string SessionMoves::firstKey(uint64_t node, std::string_view topic) {
  std::string k(reinterpret_cast<const char*>(&node), sizeof node);
  k.append(topic);
  return k;
}

void SessionMoves::delivered(Session& s, const Delivery& d) {
  const Message& m = *d.msg;
  if (!m.cluster_node) return;
  if (auto out = out_.find(s.clientId()); out != out_.end()) {
    if (d.seq) out->second.ids[d.seq] = {m.cluster_node, m.cluster_seq};
    return;
  }
  if (auto it = in_by_client_.find(s.clientId()); it != in_by_client_.end()) {
    auto [first, added] = in_[it->second].first_seen.try_emplace(firstKey(m.cluster_node, m.topic), m.cluster_seq);
    if (!added && m.cluster_seq < first->second) first->second = m.cluster_seq;
  }
}

// --- the node the session moves to ---

void SessionMoves::onPart(const cluster::MoveHeader& h, std::string_view body) {
  auto it = in_.find(h.move);
  if (it == in_.end() || !it->second.waiting_answer) return;  // given up, or answered already
  In& in = it->second;
  cluster::MovePart part;
  if (!cluster::decodeMovePart(body, part)) {
    LOG_WARN("cluster: session %s: a part node %s sent cannot be read; the move is given up", in.client_id.c_str(),
             in.from_name.c_str());
    return finishIn(in.move, false);
  }
  in.waiting_answer = false;
  const int64_t now = static_cast<int64_t>(timers_.now());
  switch (part.status) {
    case cluster::MoveStatus::None:
      // After the snapshot: the old node restarted and does not know yet
      // that this node has it (its registry's watch): asked again, until
      // kTailMs.
      if (in.state == In::State::Tail) {
        in.retry_at_ms = now + int64_t(kRetryMs);
        return;
      }
      // Not there (it ended, or moved on): the CONNECT goes on with what
      // this node has. Half written: a move that failed.
      return finishIn(in.move, !in.wrote);
    case cluster::MoveStatus::Busy:
    case cluster::MoveStatus::Wait:
      in.retry_at_ms = now + int64_t(kRetryMs);
      return;
    case cluster::MoveStatus::Part: break;
  }
  if (in.state == In::State::Tail) {
    deliverTail(in, part);
    if (part.last) {
      cluster::encodeMoveClient({cluster::MoveKind::Finish, in.move, cluster_.nodeId()}, in.client_id, buf_);
      cluster_.sendMove(in.from_token, buf_);
      return finishIn(in.move, true);
    }
    in.next = part.next;
    return ask(in);
  }
  writePart(in, part);
  in.next = part.next;
  if (!part.last) return ask(in);
  in.state = In::State::Installing;
  in.commit_ticket = writtenTicket();
}

void SessionMoves::writePart(In& in, cluster::MovePart& part) {
  persistence::Batch& b = durable_.batch();
  if (part.has_session && !in.wrote) {
    // An older copy here (the client was on this node before) gives way,
    // and so does what a move killed half-way left in the store.
    if (Session* old = sessions_.find(in.client_id)) {
      if (old->conn) old->conn->disconnect(mqtt::Reason::SessionTakenOver);
      old->will.reset();  // its connection ended long ago: its will went or is void
      sessions_.end(old);
    } else {
      b.deleteSession(in.client_id);
    }
    in.record = part.session;
    in.record.expires_at_ms = 0;  // its client is connecting
    in.record.will.reset();
    in.record.will_at_ms = 0;
    in.subscriptions = std::move(part.subscriptions);
    in.inbound_qos2 = std::move(part.inbound_qos2);
    in.wrote = true;
  }
  if (!in.wrote) return;
  for (cluster::MoveEntry& e : part.entries) {
    const uint64_t id = durable_.newMessageId();
    b.putMessage(id, e.message, 1);
    e.queue.msg_id = id;
    b.putQueue(in.client_id, e.queue);
  }
  in.entries += part.entries.size();
  counters_.entries_in += part.entries.size();
  if (!part.last) return;
  // The session's record last: a node killed half-way through loads no
  // half of a session at its restart (the entries written go with the
  // next move's first part).
  b.putSession(in.client_id, in.record);
  for (const auto& s : in.subscriptions) b.putSubscription(in.client_id, s);
  for (uint16_t id : in.inbound_qos2) b.putInboundQos2(in.client_id, id);
}

void SessionMoves::install(In& in) {
  const int64_t wall = clock_.wallMs();
  if (sessions_.find(in.client_id)) {
    // Cannot happen: every CONNECT of the client waits for the move.
    LOG_ERROR("client %s: a session appeared while it moved here; the moved one is dropped", in.client_id.c_str());
    in.wrote = false;
    return finishIn(in.move, false);
  }
  Session& s = sessions_.restore(in.client_id, in.record, wall);
  for (const auto& r : in.subscriptions) sessions_.restoreSubscription(s, r);
  for (uint16_t id : in.inbound_qos2) s.inbound_qos2.insert(id);
  ++counters_.moved_in;
  LOG_NOTICE("client %s: session moved here from node %s (%zu subscriptions, %llu queued messages)",
             in.client_id.c_str(), in.from_name.c_str(), in.subscriptions.size(),
             static_cast<unsigned long long>(in.entries));
  in.subscriptions.clear();
  in.inbound_qos2.clear();
  s.moving = true;  // until what came after the snapshot is here
  // The registry names this node from now on, whether or not the client
  // is still there to be answered.
  cluster_.clientConnected(in.client_id);
  in.state = In::State::Grace;
  in.phase = 2;
  in.started_ms = static_cast<int64_t>(timers_.now());
  in.retry_at_ms = in.started_ms + int64_t(kGraceMs);
  const uint64_t ticket = in.ticket;
  in.ticket = 0;
  if (ticket && on_done_) on_done_(ticket, false);
}

void SessionMoves::deliverTail(In& in, cluster::MovePart& part) {
  Session* s = sessions_.find(in.client_id);
  uint32_t given = 0;
  for (cluster::MoveEntry& e : part.entries) {
    ++counters_.entries_in;
    ++in.entries;
    if (!s) continue;  // ended here meanwhile (a clean start): nothing is owed
    if (e.node) {
      // Its node sent it here too, knowing this node wanted it: it came
      // through this node's own subscriptions.
      auto first = in.first_seen.find(firstKey(e.node, e.message.topic));
      if (first != in.first_seen.end() && e.seq >= first->second) {
        ++in.duplicates;
        ++counters_.duplicates;
        continue;
      }
    }
    MessagePtr m = messageFromRecord(std::move(e.message), durable_.newMessageId());
    Delivery d;
    d.msg = m;
    d.qos = e.queue.qos;
    d.retain = e.queue.retain;
    d.subscription_ids = std::move(e.queue.subscription_ids);
    const DeliverOutcome o = sessions_.deliver(*s, std::move(d));
    if (o == DeliverOutcome::Stored || o == DeliverOutcome::StoredInGate) durable_.putMessage(*m, 1);
    ++given;
  }
  if (given) sessions_.pump(*s);
}

void SessionMoves::finishIn(uint64_t move, bool ok) {
  auto it = in_.find(move);
  if (it == in_.end()) return;
  In& in = it->second;
  const bool installed = in.state != In::State::Asking && in.state != In::State::Installing;
  if (!installed && in.wrote && !sessions_.find(in.client_id)) {
    durable_.batch().deleteSession(in.client_id);  // what was written of it goes
  }
  if (!ok) {
    ++counters_.failed;
    if (!installed) {
      LOG_WARN("client %s: node %s did not hand its session over; it connects without it", in.client_id.c_str(),
               in.from_name.c_str());
    } else {
      LOG_WARN("client %s: node %s did not hand over what it queued after the move; it stays there",
               in.client_id.c_str(), in.from_name.c_str());
    }
  }
  if (installed) {
    if (Session* s = sessions_.find(in.client_id)) s->moving = false;
    if (ok)
      LOG_INFO("client %s: its move is complete (%llu queued messages, %llu of them it had already)",
               in.client_id.c_str(), static_cast<unsigned long long>(in.entries),
               static_cast<unsigned long long>(in.duplicates));
  }
  // A CONNECT waiting for it goes on without the session (one that came
  // after the install did not wait: moveIn).
  const uint64_t ticket = installed ? 0 : in.ticket;
  in_by_client_.erase(in.client_id);
  in_.erase(it);
  if (ticket && on_done_) on_done_(ticket, false);
}

// --- the node the session moves from ---

void SessionMoves::onTake(const cluster::MoveHeader& h, std::string_view body) {
  cluster::MoveTake t;
  if (!cluster::decodeMoveTake(body, t)) {
    LOG_WARN("cluster: a session move request no Petrel node sends; dropped");
    return;
  }
  cluster::MoveHeader answer_h{cluster::MoveKind::Part, h.move, h.node};
  cluster::MovePart none;
  Session* s = sessions_.find(t.client_id);
  if (in_by_client_.count(t.client_id) || (t.phase == 1 && adoption_.holding(t.client_id))) {
    none.status = cluster::MoveStatus::Busy;  // it is moving here (or being taken): ask again
    return reply(answer_h, t.reply_to, none);
  }
  if (!s && t.phase == 1) {
    // Asked as the node that takes a down node's sessions: taken now.
    const Cluster::Owner* down = cluster_.registeredOwner(t.client_id);
    if (down && down->token != t.reply_to && cluster_.nodeQuiet(down->token) &&
        adoption_.begin(down->token, down->name) && adoption_.busy(down->token)) {
      none.status = cluster::MoveStatus::Busy;
      return reply(answer_h, t.reply_to, none);
    }
  }
  auto out = out_.find(t.client_id);
  if (t.phase == 2) {
    if (!s || s->conn) return reply(answer_h, t.reply_to, none);
    if (out == out_.end() || out->second.move != h.move || out->second.node != h.node) {
      // What came after the snapshot, asked for by the node the registry
      // names now, under a move this node does not know: this node
      // restarted during the move, or that one did ('R'). It goes to it.
      const std::string* owner = cluster_.registeredToken(t.client_id);
      if (!owner || *owner != t.reply_to) return reply(answer_h, t.reply_to, none);
      if (out == out_.end()) {
        Out& o = out_[t.client_id];
        o.snapshot_done = true;
        o.snapshot_end_ms = static_cast<int64_t>(timers_.now()) - int64_t(kGraceMs);
        o.settled_mark = cluster_.streamSettledSeen();
        o.next = t.from;
        s->moving = true;
        LOG_INFO("client %s: node %s takes what was queued here after its session moved", t.client_id.c_str(),
                 t.reply_to.c_str());
        out = out_.find(t.client_id);
      }
      out->second.move = h.move;
      out->second.node = h.node;
      out->second.reply_to = t.reply_to;
    }
  } else {
    if (!s || !s->stored || !durable_.enabled() || s->bridge) return reply(answer_h, t.reply_to, none);
    if (out == out_.end() || out->second.move != h.move || out->second.node != h.node) {
      // A new move (one to another node before is over: that node's next
      // request finds nothing).
      Out& o = out_[t.client_id];
      const bool unsubscribed = o.unsubscribed;  // by an earlier move that did not finish
      o = Out{};
      o.unsubscribed = unsubscribed;
      o.move = h.move;
      o.node = h.node;
      o.reply_to = t.reply_to;
      LOG_INFO("client %s: its session moves to node %s", t.client_id.c_str(), t.reply_to.c_str());
      // Its connection here, if any, ends as in a takeover.
      if (s->conn) s->conn->disconnect(mqtt::Reason::SessionTakenOver);
      s->moving = true;
      out = out_.find(t.client_id);
    }
  }
  out->second.heard_ms = static_cast<int64_t>(timers_.now());
  // Answered once what the store holds of it is committed (and its
  // connection has gone).
  pending_.push_back({t.client_id, answer_h, std::move(t), writtenTicket(), s->conn == nullptr});
  // Often ready at once (nothing of it waits for a commit).
  afterCommit(durable_.committed());
  arm();
}

void SessionMoves::afterCommit(uint64_t committed) {
  std::vector<uint64_t> installing;
  for (auto& [move, in] : in_)
    if (in.state == In::State::Installing && in.commit_ticket <= committed) installing.push_back(move);
  for (uint64_t move : installing) {
    auto it = in_.find(move);
    if (it != in_.end()) install(it->second);
  }
  if (pending_.empty()) return;
  std::vector<Pending> ready;
  for (size_t i = 0; i < pending_.size();) {
    Pending& p = pending_[i];
    Session* s = sessions_.find(p.client_id);
    if (!p.conn_gone && s && s->conn) {
      ++i;
      continue;
    }
    if (!p.conn_gone) {
      // Its connection has ended now: what that wrote (the session
      // offline, the packet ids in flight) is committed first.
      p.conn_gone = true;
      p.ticket = writtenTicket();
    }
    if (p.ticket <= committed) {
      ready.push_back(std::move(pending_[i]));
      pending_[i] = std::move(pending_.back());
      pending_.pop_back();
    } else {
      ++i;
    }
  }
  for (const Pending& p : ready) answer(p);
}

void SessionMoves::answer(const Pending& p) {
  cluster::MovePart part;
  Session* s = sessions_.find(p.client_id);
  auto out = out_.find(p.client_id);
  if (!s || out == out_.end() || out->second.move != p.header.move) return reply(p.header, p.take.reply_to, part);
  Out& o = out->second;
  part.status = cluster::MoveStatus::Part;
  if (p.take.phase == 1 && p.take.from == 0) {
    part.has_session = true;
    part.session.version = static_cast<uint8_t>(s->version);
    part.session.expiry_interval = s->expiry_interval;
    part.session.username = s->username;
    for (const auto& e : s->subscriptions) part.subscriptions.push_back(subscriptionRecord(e.key, e.opts));
    part.inbound_qos2 = s->inbound_qos2.ids();
  }
  // The queue from the store, from where the asking node got to.
  persistence::Store& st = durable_.store();
  std::vector<persistence::QueueRecord> recs;
  size_t bytes = 0;
  uint64_t from = p.take.from;
  bool more = true;
  while (more) {
    constexpr size_t kRead = 256;
    std::vector<persistence::QueueRecord> got;
    const size_t n =
        st.readQueue(p.client_id, from, kRead, [&](persistence::QueueRecord& q) { got.push_back(std::move(q)); });
    more = n == kRead;
    bool full = false;
    for (auto& q : got) {
      // One part stays below NATS's payload limit (one larger message goes
      // alone).
      if (!recs.empty() && bytes + q.bytes + 64 > kPartBytes) {
        full = true;
        break;
      }
      from = q.seq + 1;
      // A share group's message in flight to it went back to its group
      // when its connection ended.
      if (!q.group.empty()) continue;
      bytes += q.bytes + 64;
      recs.push_back(std::move(q));
    }
    if (full) {
      more = true;
      break;
    }
  }
  std::vector<uint64_t> ids;
  ids.reserve(recs.size());
  for (const auto& q : recs) ids.push_back(q.msg_id);
  size_t i = 0;
  part.entries.reserve(recs.size());
  st.readMessages(ids, [&](uint64_t id, persistence::MessageRecord&& m) {
    while (i < recs.size() && recs[i].msg_id != id) {
      LOG_ERROR("persistence: message %llu of client %s is missing from the store; not moved",
                static_cast<unsigned long long>(recs[i].msg_id), p.client_id.c_str());
      ++i;
    }
    if (i == recs.size()) return;
    part.entries.push_back({std::move(recs[i]), std::move(m)});
    if (auto idn = o.ids.find(part.entries.back().queue.seq); idn != o.ids.end()) {
      part.entries.back().node = idn->second.first;
      part.entries.back().seq = idn->second.second;
      o.ids.erase(idn);
    }
    ++i;
  });
  counters_.entries_out += part.entries.size();
  part.next = from;
  const int64_t now = static_cast<int64_t>(timers_.now());
  if (more) {
    part.last = false;
  } else if (p.take.phase == 1) {
    // The snapshot is complete. The session stays here, subscribed, for
    // the grace: what other nodes sent here before they knew the new node
    // wants its filters is queued, and goes over afterwards.
    part.last = true;
    o.snapshot_done = true;
    o.snapshot_end_ms = now;
    o.next = from;
    o.settled_mark = cluster_.streamSettledSeen();
  } else if (part.entries.empty()) {
    // After the grace, and once the stream has had nothing more for this
    // node since the snapshot: nothing more can come for it here.
    const bool over = o.snapshot_done && now >= o.snapshot_end_ms + int64_t(kGraceMs) &&
                      cluster_.streamSettledSeen() >= o.settled_mark + 2;
    if (over && !o.unsubscribed) {
      // Nothing more is queued for it here; what was, up to now, goes
      // once committed.
      router_.unsubscribeAll(*s, true);
      o.unsubscribed = true;
      pending_.push_back({p.client_id, p.header, p.take, writtenTicket(), true});
      arm();
      return;
    }
    if (over) part.last = true;
    else part.status = cluster::MoveStatus::Wait;
  }
  reply(p.header, p.take.reply_to, part);
}

void SessionMoves::reply(const cluster::MoveHeader& h, const std::string& to, const cluster::MovePart& part) {
  cluster::encodeMovePart(h, part, buf_);
  if (!cluster_.sendMove(to, buf_))
    LOG_WARN("cluster: a session move answer to node %s could not be sent (%zu bytes)", to.c_str(), buf_.size());
}

void SessionMoves::onFinish(const cluster::MoveHeader& h, const std::string& client_id) {
  auto out = out_.find(client_id);
  if (out == out_.end() || out->second.move != h.move || out->second.node != h.node) return;
  out_.erase(out);
  Session* s = sessions_.find(client_id);
  if (!s) return;
  s->moving = false;
  if (s->conn) return;  // the client came back here meanwhile: it stays
  s->will.reset();      // it went with the move (or came with the new connection)
  sessions_.end(s);
  ++counters_.moved_out;
  arm();
  LOG_INFO("client %s: session moved to another node; dropped here", client_id.c_str());
}

// The old node of a session this node took, and whose move it forgot
// (it restarted after the install): what came after the snapshot is taken
// now. What this node got itself meanwhile is not known any more: such
// messages may arrive twice.
void SessionMoves::onResume(const cluster::MoveHeader& h, std::string_view body) {
  cluster::MoveTake t;
  if (!cluster::decodeMoveTake(body, t)) {
    LOG_WARN("cluster: a session move request no Petrel node sends; dropped");
    return;
  }
  Session* s = sessions_.find(t.client_id);
  if (!s || in_by_client_.count(t.client_id)) return;
  const std::string* owner = cluster_.registeredToken(t.client_id);
  if (owner && *owner != cluster_.ownToken()) return;  // it moved on since
  const uint64_t move = next_move_++;
  In& in = in_[move];
  in.move = move;
  in.client_id = t.client_id;
  in.from_node = h.node;
  in.from_token = t.reply_to;
  in.from_name = t.reply_to;
  in.state = In::State::Tail;
  in.phase = 2;
  in.next = t.from;
  in.wrote = true;
  in.started_ms = static_cast<int64_t>(timers_.now());
  in_by_client_[t.client_id] = move;
  s->moving = true;
  LOG_INFO("client %s: taking what node %s queued for it after its move", t.client_id.c_str(), t.reply_to.c_str());
  ask(in);
  arm();
}

void SessionMoves::onDiscard(const std::string& client_id) {
  if (out_.count(client_id) || in_by_client_.count(client_id)) return;
  Session* s = sessions_.find(client_id);
  if (!s || s->conn) return;
  LOG_INFO("client %s: connected to another node with a clean start; its session here ends", client_id.c_str());
  sessions_.end(s);
}

void SessionMoves::tick() {
  const int64_t now = static_cast<int64_t>(timers_.now());
  std::vector<uint64_t> given_up;
  std::vector<uint64_t> to_adopter;
  std::vector<uint64_t> without;
  for (auto& [move, in] : in_) {
    if (in.cannot_adopt) {
      without.push_back(move);
      continue;
    }
    if (in.waiting_answer) {
      if (now - in.asked_ms <= int64_t(kAnswerMs)) continue;
      // No answer: the node may be down (its machine gone: NATS still
      // holds its subscriptions for a while). Asked again until it is
      // known to be, then its sessions are taken.
      if (in.state != In::State::Asking || now - in.started_ms >= int64_t(in.patient ? kAdoptWaitMs : kSilentMs)) {
        given_up.push_back(move);
        continue;
      }
      in.waiting_answer = false;
      in.silent = true;
      in.retry_at_ms = now;
    }
    if (in.state == In::State::Installing) continue;
    if (in.state == In::State::Grace || in.state == In::State::Tail) {
      if (now - in.started_ms > int64_t(kGraceMs + kTailMs)) {
        given_up.push_back(move);
        continue;
      }
    } else if (now - in.started_ms > int64_t(in.patient ? kAdoptWaitMs : in.silent ? kSilentMs : kAnswerMs)) {
      given_up.push_back(move);  // kept busy for too long
      continue;
    }
    if (in.retry_at_ms && now >= in.retry_at_ms) {
      in.retry_at_ms = 0;
      if (in.state == In::State::Asking && !cluster_.movesSessions()) {
        in.retry_at_ms = now + 500;  // this node's link is down: asked once it is back
        continue;
      }
      if (in.state == In::State::Asking && in.silent) {
        if (cluster_.nodeDown(in.from_token)) {
          to_adopter.push_back(move);
          continue;
        }
        if (!in.patient && !cluster_.nodeUp(in.from_token)) {
          in.retry_at_ms = now + 500;  // not up, not known to be down yet
          continue;
        }
      }
      if (in.state == In::State::Grace) in.state = In::State::Tail;
      ask(in);
    }
  }
  for (uint64_t m : given_up) finishIn(m, false);
  for (uint64_t m : without) finishIn(m, true);
  for (uint64_t m : to_adopter) {
    auto it = in_.find(m);
    if (it == in_.end()) continue;
    In& in = it->second;
    if (in.patient) toAdopter(in, in.down_token, in.down_name);  // the adopter is down too
    else toAdopter(in, in.from_token, in.from_name);
  }
  for (auto it = out_.begin(); it != out_.end();) {
    Out& o = it->second;
    if (o.snapshot_done && now - o.heard_ms > int64_t(kResumeAfterMs) && now - o.resumed_ms > int64_t(kResumeAfterMs)) {
      // The new node went quiet after the snapshot: restarted? When the
      // registry still names it and a node of that name is up, it is
      // asked to take the rest.
      const std::string* owner = cluster_.registeredToken(it->first);
      if (owner && *owner == o.reply_to && cluster_.nodeUp(o.reply_to)) {
        cluster::MoveTake t;
        t.phase = 2;
        t.from = o.next;
        t.reply_to = cluster_.ownToken();
        t.client_id = it->first;
        cluster::encodeMoveTake({cluster::MoveKind::Resume, o.move, cluster_.nodeId()}, t, buf_);
        cluster_.sendMove(o.reply_to, buf_);
        o.resumed_ms = now;
      }
    }
    if (now - it->second.heard_ms > int64_t(kOutIdleMs)) {
      LOG_WARN("client %s: node %s stopped taking its session; it stays here", it->first.c_str(),
               it->second.reply_to.c_str());
      if (Session* s = sessions_.find(it->first)) {
        s->moving = false;
        if (it->second.unsubscribed)
          for (const auto& e : s->subscriptions) sessions_.restoreSubscription(*s, subscriptionRecord(e.key, e.opts));
      }
      it = out_.erase(it);
    } else {
      ++it;
    }
  }
  // Requests whose session's connection has gone by now and whose
  // commit is done.
  if (!pending_.empty()) afterCommit(durable_.committed());
  arm();
}

}  // namespace petrel
