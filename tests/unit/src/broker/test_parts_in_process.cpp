// The broker's parts (BrokerParts, as Broker builds them), driven in-process without
// sockets: routing into sessions (merging overlapping subscriptions, No
// Local, QoS downgrade, queue limits), share groups queueing while no
// member is online, retained messages on subscribe, and session expiry on
// the timer facility. Sessions here are offline (no connection), so every
// QoS 1/2 copy shows up in the session's queue where the test can see it --
// except in the flow-control tests at the end, which give a session a
// connection that is never started (no socket): what would be written to
// the client accumulates in its output buffer.
#include <gtest/gtest.h>

#include <uv.h>

#include "mqtt/encoder.h"
#include "src/broker/broker.h"
#include "src/broker/parts.h"

namespace petrel {
namespace {

// The loop comes first: the parts are built on it.
struct Loop {
  Loop() { uv_loop_init(&loop_); }
  uv_loop_t loop_;
};

class Parts : public ::testing::Test, protected Loop, protected BrokerParts {
 protected:
  Parts() : BrokerParts(&loop_, Config{}) {}
  ~Parts() override {
    timers_.close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  Session& session(const std::string& id) {
    Session& s = sessions_.create(id);
    s.expiry_interval = 0xFFFFFFFF;  // kept while offline
    return s;
  }
  void subscribe(Session& s, const std::string& filter, uint8_t qos, uint32_t id = 0, bool no_local = false,
                 const std::string& group = "") {
    SubscriptionOptions o;
    o.qos = qos;
    o.subscription_id = id;
    o.no_local = no_local;
    router_.tree().subscribe(filter, group, &s, o);
    s.subscriptions.set(group.empty() ? filter : "$share/" + group + "/" + filter, o);
    if (!group.empty()) {
      s.has_shared = true;
      groups_.configure(*router_.tree().findGroup(filter, group, false));
    }
  }
  static MessagePtr message(const std::string& topic, uint8_t qos, const std::string& origin = "pub",
                            bool retain = false, const std::string& payload = "x") {
    auto m = std::make_shared<Message>();
    m->topic = topic;
    m->payload = payload;
    m->qos = qos;
    m->origin = origin;
    m->retain = retain;
    return m;
  }

};

TEST_F(Parts, OverlappingSubscriptionsMakeOneDeliveryWithTheHighestQosAndEveryId) {
  Session& s = session("sub");
  subscribe(s, "a/+", 1, 11);
  subscribe(s, "a/#", 2, 22);
  subscribe(s, "a/b", 0, 0);
  const RouteResult r = router_.route(message("a/b", 2));
  EXPECT_EQ(r.matched, 1u);
  ASSERT_EQ(s.queue.size(), 1u);
  EXPECT_EQ(s.queue.front().qos, 2);
  std::vector<uint32_t> ids = s.queue.front().subscription_ids.toVector();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<uint32_t>{11, 22}));
  EXPECT_EQ(r.early_ack, nullptr);  // no store: nothing to gate
}

TEST_F(Parts, QosIsDowngradedToTheGrantedOne) {
  Session& s = session("sub");
  subscribe(s, "t", 1);
  router_.route(message("t", 2));
  ASSERT_EQ(s.queue.size(), 1u);
  EXPECT_EQ(s.queue.front().qos, 1);
}

TEST_F(Parts, NoLocalKeepsAMessageFromItsPublisher) {
  Session& s = session("me");
  subscribe(s, "t", 1, 0, /*no_local=*/true);
  EXPECT_EQ(router_.route(message("t", 1, "me")).matched, 0u);
  EXPECT_TRUE(s.queue.empty());
  router_.route(message("t", 1, "someone-else"));
  EXPECT_EQ(s.queue.size(), 1u);
}

TEST_F(Parts, QosZeroIsNotQueuedForAnOfflineSession) {
  Session& s = session("sub");
  subscribe(s, "t", 0);
  EXPECT_EQ(router_.route(message("t", 0)).matched, 1u);
  EXPECT_TRUE(s.queue.empty());
}

TEST_F(Parts, QueueLimitDropsAndCounts) {
  cfg_.max_queued_messages = 3;
  Session& s = session("sub");
  subscribe(s, "t", 1);
  for (int i = 0; i < 5; ++i) router_.route(message("t", 1));
  EXPECT_EQ(s.queue.size(), 3u);
  EXPECT_EQ(s.dropped, 2u);
  EXPECT_EQ(stats_.messages_dropped, 2u);
}

TEST_F(Parts, ShareGroupQueuesWhileNoMemberIsOnlineAndGivesEachMessageOnce) {
  Session& a = session("a");
  Session& b = session("b");
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  subscribe(b, "jobs/#", 1, 0, false, "workers");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(router_.route(message("jobs/x", 1)).matched, 1u);
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->queued(), 4u);  // the group holds them, not the members
  EXPECT_TRUE(a.queue.empty());
  EXPECT_TRUE(b.queue.empty());
}

TEST_F(Parts, AShareGroupWhoseLastMemberLeftDropsWhatItQueuedAndTakesNothingMore) {
  Session& a = session("a");
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(router_.route(message("jobs/x", 1)).matched, 1u);
  router_.unsubscribeAll(a);  // its session ends
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  EXPECT_TRUE(g == nullptr || g->queued() == 0u);
  EXPECT_EQ(router_.route(message("jobs/x", 1)).matched, 0u);
  EXPECT_EQ(stats_.messages_dropped, 4u);
}

TEST_F(Parts, AShareGroupWhoseLastMemberMovedToAnotherNodeKeepsWhatItQueuedForIt) {
  // The member lives on, on another node of a cluster: what the group
  // queued here is the member's (the cluster takes it from here), and so
  // is what comes meanwhile.
  Session& a = session("a");
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(router_.route(message("jobs/x", 1)).matched, 1u);
  router_.unsubscribeAll(a, true);
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(g->handing_over);
  EXPECT_FALSE(g->abandoned());
  EXPECT_EQ(g->queued(), 4u);
  EXPECT_EQ(router_.route(message("jobs/x", 1)).matched, 1u);
  EXPECT_EQ(g->queued(), 5u);
  EXPECT_EQ(stats_.messages_dropped, 0u);
  // A member here again, whose session then ends: the group ends with it.
  Session& b = session("b");
  subscribe(b, "jobs/#", 1, 0, false, "workers");
  EXPECT_FALSE(g->handing_over);
  router_.unsubscribeAll(b);
  g = router_.tree().findGroup("jobs/#", "workers", false);
  EXPECT_TRUE(g == nullptr || g->queued() == 0u);
  EXPECT_EQ(stats_.messages_dropped, 5u);
}

TEST_F(Parts, AShareGroupsMessageTheClusterRefusesAsTooLargeStaysForItsMemberHere) {
  // In a cluster: a message the group queued as this node's own is offered
  // to the cluster while its member here is offline. NATS refuses it as
  // too large (putBack, too_large): it waits for the member here and is
  // not offered again (it used to be, at once, for as long as the member
  // was away). Once the member moves to another node it cannot follow,
  // and is dropped.
  std::vector<const Message*> offered;
  SharedGroups::ClusterLink link;
  link.group = [](SharedGroup&, bool) {};
  link.give = [&](SharedGroup&, const MessagePtr& m, uint64_t) {
    offered.push_back(m.get());
    return true;
  };
  groups_.setClusterLink(link);
  Session& a = session("a");
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  ASSERT_NE(g, nullptr);
  const MessagePtr big = message("jobs/big", 1);
  EXPECT_EQ(router_.route(big).matched, 1u);
  EXPECT_EQ(router_.route(message("jobs/small", 1)).matched, 1u);
  groups_.handBackAll();
  ASSERT_EQ(offered.size(), 2u);
  EXPECT_EQ(offered[0], big.get());
  EXPECT_EQ(g->queued(), 0u);
  groups_.putBack(g->owner(), big, 0, true);
  EXPECT_EQ(g->queued(), 1u);
  groups_.handBackAll();
  groups_.handBackAll();
  EXPECT_EQ(offered.size(), 2u);
  EXPECT_EQ(g->queued(), 1u);
  EXPECT_EQ(stats_.messages_dropped, 0u);
  router_.unsubscribeAll(a, true);
  groups_.handBackAll();
  EXPECT_EQ(offered.size(), 2u);
  EXPECT_EQ(stats_.messages_dropped, 1u);
  g = router_.tree().findGroup("jobs/#", "workers", false);
  EXPECT_TRUE(g == nullptr || g->queued() == 0u);
}

TEST_F(Parts, RetainedMessagesGoToANewSubscriberFlaggedRetained) {
  router_.retain(message("cfg/a", 1, "pub", true, "1"));
  router_.retain(message("cfg/b", 0, "pub", true, "2"));
  router_.retain(message("other", 1, "pub", true, "3"));
  Session& s = session("sub");
  SubscriptionOptions o;
  o.qos = 1;
  router_.sendRetained(s, "cfg/+", o);
  ASSERT_EQ(s.queue.size(), 1u);  // the QoS 0 one is not queued offline
  EXPECT_EQ(s.queue.front().msg->topic, "cfg/a");
  EXPECT_TRUE(s.queue.front().retain);
  router_.retain(message("cfg/a", 1, "pub", true, ""));  // cleared
  EXPECT_EQ(router_.retained().size(), 2u);
}

TEST_F(Parts, AnOfflineSessionExpiresOnItsTimerAndItsDelayedWillGoesOut) {
  Session& watcher = session("watcher");
  subscribe(watcher, "wills/#", 1);
  Session& s = session("dev");
  s.expiry_interval = 1;
  s.will = std::make_unique<mqtt::Will>();
  s.will->topic = "wills/dev";
  s.will->payload = "gone";
  s.will->qos = 1;
  s.will_at_ms = clock_.wallMs() + 20;
  s.expires_at_ms = clock_.wallMs() + 60;
  sessions_.scheduleExpiry(s);
  // A guard so that the test cannot hang.
  uv_timer_t guard;
  uv_timer_init(&loop_, &guard);
  uv_timer_start(&guard, [](uv_timer_t* t) { uv_stop(t->loop); }, 2000, 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(&guard));
  while (sessions_.find("dev") && uv_run(&loop_, UV_RUN_ONCE)) {
  }
  EXPECT_EQ(sessions_.find("dev"), nullptr);
  ASSERT_EQ(watcher.queue.size(), 1u);
  EXPECT_EQ(watcher.queue.front().msg->topic, "wills/dev");
  // The guard lives on this stack frame: its close completes here.
  uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
  uv_run(&loop_, UV_RUN_NOWAIT);
}

// --- Session flow control, with a connection that has no socket ---

class Flow : public Parts {
 protected:
  Flow() : broker_(&loop_, Config{}) {}
  // A connected client for `s`; its output is never flushed.
  Connection& connect(Session& s, mqtt::Version v = mqtt::Version::V311, uint16_t receive_max = 100) {
    conns_.push_back(std::make_unique<Connection>(broker_));
    Connection& c = *conns_.back();
    c.connected = true;
    c.version = v;
    c.session = &s;
    s.conn = &c;
    s.version = v;
    s.client_receive_max = receive_max;
    return c;
  }
  static size_t publishes(const std::string& out) {
    size_t n = 0;
    for (size_t pos = 0; pos < out.size();) {
      mqtt::Frame f;
      if (mqtt::peekFrame(reinterpret_cast<const uint8_t*>(out.data()) + pos, out.size() - pos, 1 << 30, f) !=
          mqtt::FrameStatus::Ok)
        break;
      n += f.type == mqtt::PacketType::Publish;
      pos += f.total_len;
    }
    return n;
  }

  Broker broker_;  // only as the connections' owner: never started
  std::vector<std::unique_ptr<Connection>> conns_;
};

TEST_F(Flow, TheWindowFillsThenTheQueueAndEachAckPullsTheNextMessage) {
  Session& s = session("sub");
  Connection& c = connect(s, mqtt::Version::V311, /*receive_max=*/3);
  subscribe(s, "t", 1);
  for (int i = 0; i < 5; ++i) router_.route(message("t", 1));
  EXPECT_EQ(s.inflight.size(), 3u);  // the client's window
  EXPECT_EQ(s.queue.size(), 2u);     // waiting, not dropped
  EXPECT_EQ(publishes(c.out()), 3u);
  sessions_.completeDelivery(s, s.inflight.front().packet_id);
  EXPECT_EQ(s.inflight.size(), 3u);
  EXPECT_EQ(s.queue.size(), 1u);
  EXPECT_EQ(publishes(c.out()), 4u);
}

TEST_F(Flow, AboveTheHighWaterMarkQos1WaitsInTheQueue) {
  Session& s = session("slow");
  Connection& c = connect(s);
  subscribe(s, "t", 1);
  c.out().append(Connection::kOutputHighWater, 'x');  // unread output
  router_.route(message("t", 1));
  EXPECT_TRUE(s.inflight.empty());
  EXPECT_EQ(s.queue.size(), 1u);
  EXPECT_TRUE(c.want_writable);  // told when the output drains
  c.out().clear();
  sessions_.pump(s);  // what onWritable does
  EXPECT_EQ(s.inflight.size(), 1u);
  EXPECT_EQ(publishes(c.out()), 1u);
}

TEST_F(Flow, QosZeroOverTheClientsBudgetIsDroppedAndCounted) {
  cfg_.max_client_output = 2 * Connection::kOutputHighWater;
  Session& s = session("slow");
  Connection& c = connect(s);
  subscribe(s, "t", 0);
  c.out().append(Connection::kOutputHighWater + 10, 'x');  // above the mark, within budget
  router_.route(message("t", 0));
  EXPECT_EQ(c.dropped_qos0, 0u);
  c.out().append(Connection::kOutputHighWater, 'x');  // over budget
  router_.route(message("t", 0));
  EXPECT_EQ(c.dropped_qos0, 1u);
  EXPECT_EQ(stats_.qos0_dropped_output, 1u);
}

TEST_F(Flow, AFanOutIsEncodedOnceAndEachReceiverGetsItsOwnPacketId) {
  Session& a = session("a");
  Session& b = session("b");
  Session& v5 = session("v5");
  Connection& ca = connect(a);
  Connection& cb = connect(b);
  Connection& c5 = connect(v5, mqtt::Version::V5);
  for (Session* s : {&a, &b, &v5}) subscribe(*s, "t", 1);
  b.inflight.push_back(InflightOut{1, Delivery{}, false});  // b's next id is 2 (a's is 1)
  router_.route(message("t", 1, "pub", false, "payload"));
  std::string want_a, want_b, want_5;
  mqtt::encodePublish(want_a, mqtt::Version::V311, "t", "payload", 1, false, false, 1, nullptr);
  mqtt::encodePublish(want_b, mqtt::Version::V311, "t", "payload", 1, false, false, 2, nullptr);
  mqtt::encodePublish(want_5, mqtt::Version::V5, "t", "payload", 1, false, false, 1, nullptr);
  EXPECT_EQ(ca.out(), want_a);
  EXPECT_EQ(cb.out(), want_b);
  EXPECT_EQ(c5.out(), want_5);
}

// --- Message expiry on every way to a receiver [MQTT-3.3.2-5] ---

// A message whose lifetime ends `in_ms` from now (negative: in the past).
static MessagePtr expiring(const std::string& topic, uint8_t qos, int64_t at_ms, bool retain = false) {
  auto m = std::make_shared<Message>();
  m->topic = topic;
  m->payload = "x";
  m->qos = qos;
  m->origin = "pub";
  m->retain = retain;
  m->expires_at_ms = at_ms;
  return m;
}

TEST_F(Parts, ExpiredMessagesAtTheHeadMakeRoomWhenTheQueueLimitIsReached) {
  cfg_.max_queued_messages = 3;
  Session& s = session("sub");
  subscribe(s, "t", 1);
  const int64_t past = clock_.wallMs() - 1;
  for (int i = 0; i < 3; ++i) router_.route(expiring("t", 1, past));
  EXPECT_EQ(s.queue.size(), 3u);  // queued: nobody looked yet
  router_.route(message("t", 1, "pub", false, "live-1"));
  router_.route(message("t", 1, "pub", false, "live-2"));
  ASSERT_EQ(s.queue.size(), 2u);
  EXPECT_EQ(s.queue.front().msg->payload, "live-1");
  EXPECT_EQ(s.dropped, 0u);  // the expired ones made room: no live message dropped
  EXPECT_EQ(stats_.messages_expired, 3u);
  // Live messages are not purged: the limit drops as before.
  router_.route(message("t", 1));
  router_.route(message("t", 1));
  EXPECT_EQ(s.queue.size(), 3u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(stats_.messages_expired, 3u);
}

TEST_F(Parts, AnExpiredRetainedMessageIsNotSentAndIsRemoved) {
  router_.retain(expiring("cfg/old", 1, clock_.wallMs() - 1, true));
  router_.retain(expiring("cfg/new", 1, clock_.wallMs() + 60'000, true));
  EXPECT_EQ(router_.retained().size(), 2u);
  Session& s = session("sub");
  SubscriptionOptions o;
  o.qos = 1;
  router_.sendRetained(s, "cfg/#", o);
  ASSERT_EQ(s.queue.size(), 1u);
  EXPECT_EQ(s.queue.front().msg->topic, "cfg/new");
  EXPECT_EQ(router_.retained().size(), 1u);
}

TEST_F(Parts, ExpiredMessagesAtTheHeadOfAFullShareGroupQueueMakeRoom) {
  cfg_.shared_max_queued = 2;
  Session& a = session("a");
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  ASSERT_NE(g, nullptr);
  // Two messages whose lifetime ended while they waited.
  for (int i = 0; i < 2; ++i) g->work->queue.push_back(GroupEntry{expiring("jobs/1", 1, clock_.wallMs() - 1)});
  EXPECT_EQ(g->queued(), 2u);
  router_.route(message("jobs/3", 1));
  EXPECT_EQ(g->queued(), 1u);
  EXPECT_EQ(g->work->dropped, 0u);
  EXPECT_EQ(stats_.messages_expired, 2u);
}

TEST_F(Parts, ExpiredEntriesAtTheHeadOfAShareGroupQueueGoWithNoMemberOnline) {
  Session& a = session("a");  // offline
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  ASSERT_NE(g, nullptr);
  // Queued while their lifetime lasted; it ended since, and no message
  // came after them (a publish to the group drops those it meets).
  const int64_t past = clock_.wallMs() - 1, later = clock_.wallMs() + 60'000;
  for (int i = 0; i < 5; ++i) g->work->queue.push_back(GroupEntry{expiring("jobs/old", 1, past)});
  g->work->queue.push_back(GroupEntry{expiring("jobs/live", 1, later)});
  g->work->queue.push_back(GroupEntry{expiring("jobs/old", 1, past)});  // behind a live one: waits until met
  EXPECT_EQ(g->queued(), 7u);
  EXPECT_EQ(groups_.expireHeads(3), 3u);  // a budget per call
  EXPECT_EQ(g->queued(), 4u);
  EXPECT_EQ(groups_.expireHeads(SharedGroups::kExpireBudget), 2u);
  ASSERT_EQ(g->queued(), 2u);
  EXPECT_EQ(g->work->queue.front().msg->topic, "jobs/live");
  EXPECT_EQ(groups_.expireHeads(SharedGroups::kExpireBudget), 0u);
  EXPECT_EQ(g->work->expired, 5u);
  EXPECT_EQ(g->work->dropped, 0u);
  EXPECT_EQ(stats_.messages_expired, 5u);
  EXPECT_EQ(a.queue.size(), 0u);  // nothing handed to the offline member
}

TEST_F(Parts, ExpiredEntriesAtTheHeadOfAnOfflineSessionsQueueGo) {
  Session& s = session("sub");  // offline
  subscribe(s, "t/#", 1);
  const int64_t past = clock_.wallMs() - 1, later = clock_.wallMs() + 60'000;
  for (int i = 0; i < 5; ++i) router_.route(expiring("t/old", 1, past));
  router_.route(expiring("t/live", 1, later));
  router_.route(expiring("t/old", 1, past));  // behind a live one: waits until it heads the queue
  EXPECT_EQ(s.queue.size(), 7u);
  EXPECT_EQ(s.sweep_at_ms, past);  // the first one queued heads the queue
  EXPECT_EQ(sessions_.sweepExpiredQueues(3), 3u);  // a budget per sweep
  EXPECT_EQ(s.queue.size(), 4u);
  EXPECT_EQ(sessions_.sweepExpiredQueues(Sessions::kSweepBudget), 2u);
  ASSERT_EQ(s.queue.size(), 2u);
  EXPECT_EQ(s.queue.front().msg->topic, "t/live");
  EXPECT_EQ(s.sweep_at_ms, later);  // watched again when the live one expires
  EXPECT_EQ(sessions_.sweepExpiredQueues(Sessions::kSweepBudget), 0u);
  EXPECT_EQ(stats_.messages_expired, 5u);
  EXPECT_EQ(s.queued_bytes, 2u);
  // A session whose first message never expires is not watched.
  Session& t = session("other");
  subscribe(t, "u", 1);
  router_.route(message("u", 1));
  router_.route(expiring("u", 1, past));
  EXPECT_EQ(t.sweep_at_ms, 0);
  EXPECT_EQ(sessions_.sweepExpiredQueues(Sessions::kSweepBudget), 0u);
  EXPECT_EQ(t.queue.size(), 2u);
  // Ending a watched session takes it out of the sweep (its head is due:
  // the sweep would otherwise reach the freed session).
  Session& gone = session("gone");
  subscribe(gone, "v", 1);
  router_.route(expiring("v", 1, past));
  EXPECT_EQ(gone.sweep_at_ms, past);
  sessions_.end(&gone);
  EXPECT_EQ(sessions_.sweepExpiredQueues(Sessions::kSweepBudget), 0u);
  EXPECT_EQ(stats_.messages_expired, 5u);
}

TEST_F(Parts, TheSweepsBudgetIsSharedByEveryOfflineSessionDue) {
  const int64_t past = clock_.wallMs() - 1;
  std::vector<Session*> subs;
  for (int i = 0; i < 3; ++i) {
    Session& s = session("sub" + std::to_string(i));
    subscribe(s, "t", 1);
    subs.push_back(&s);
  }
  for (int i = 0; i < 4; ++i) router_.route(expiring("t", 1, past));  // 4 to each
  EXPECT_EQ(sessions_.sweepExpiredQueues(5), 5u);
  size_t left = 0;
  for (Session* s : subs) left += s->queue.size();
  EXPECT_EQ(left, 7u);
  EXPECT_EQ(sessions_.sweepExpiredQueues(5), 5u);  // the one cut short is due again
  EXPECT_EQ(sessions_.sweepExpiredQueues(5), 2u);
  for (Session* s : subs) {
    EXPECT_TRUE(s->queue.empty());
    EXPECT_EQ(s->sweep_at_ms, 0);
  }
  EXPECT_EQ(stats_.messages_expired, 12u);
}

// The packet types written to a connection's output, in order.
static std::vector<mqtt::PacketType> packets(const std::string& out) {
  std::vector<mqtt::PacketType> v;
  for (size_t pos = 0; pos < out.size();) {
    mqtt::Frame f;
    if (mqtt::peekFrame(reinterpret_cast<const uint8_t*>(out.data()) + pos, out.size() - pos, 1 << 30, f) !=
        mqtt::FrameStatus::Ok)
      break;
    v.push_back(f.type);
    pos += f.total_len;
  }
  return v;
}

TEST_F(Flow, AMessageThatExpiresInTheQueueIsNotSent) {
  Session& s = session("sub");
  Connection& c = connect(s, mqtt::Version::V5, /*receive_max=*/1);
  subscribe(s, "t", 1);
  router_.route(message("t", 1));                                   // in flight
  router_.route(expiring("t", 1, clock_.wallMs() + 3'600'000));     // queued, lives
  router_.route(expiring("t", 1, clock_.wallMs() - 1));             // queued, expired
  router_.route(message("t", 1, "pub", false, "last"));             // queued
  EXPECT_EQ(s.queue.size(), 3u);
  sessions_.completeDelivery(s, s.inflight.front().packet_id);
  sessions_.completeDelivery(s, s.inflight.front().packet_id);
  ASSERT_EQ(s.inflight.size(), 1u);
  EXPECT_EQ(s.inflight.front().d.msg->payload, "last");
  EXPECT_TRUE(s.queue.empty());
  EXPECT_EQ(publishes(c.out()), 3u);
  EXPECT_EQ(stats_.messages_expired, 1u);
}

TEST_F(Flow, OnReconnectAnExpiredQos1InFlightIsDroppedAndAnExpiredQos2IsReleased) {
  Session& s = session("sub");
  const int64_t past = clock_.wallMs() - 1;
  Delivery q1;
  q1.msg = expiring("t", 1, past);
  q1.qos = 1;
  Delivery q2;
  q2.msg = expiring("t", 2, past);
  q2.qos = 2;
  Delivery live;
  live.msg = message("t", 1);
  live.qos = 1;
  Delivery done;  // PUBREC came back before the disconnect
  done.msg = expiring("t", 2, past);
  done.qos = 2;
  s.inflight.push_back({1, std::move(q1), false});
  s.inflight.push_back({2, std::move(q2), false});
  s.inflight.push_back({3, std::move(live), false});
  s.inflight.push_back({4, std::move(done), true});
  Connection& c = connect(s, mqtt::Version::V5);
  sessions_.resume(s, c);
  // No expired PUBLISH goes out: the QoS 1 exchange ends, the QoS 2 one
  // is closed with a PUBREL (the client may hold its packet id).
  EXPECT_EQ(packets(c.out()), (std::vector<mqtt::PacketType>{mqtt::PacketType::Pubrel, mqtt::PacketType::Publish,
                                                             mqtt::PacketType::Pubrel}));
  ASSERT_EQ(s.inflight.size(), 3u);
  EXPECT_EQ(s.findInflight(1), nullptr);
  ASSERT_NE(s.findInflight(2), nullptr);
  EXPECT_TRUE(s.findInflight(2)->released);
  EXPECT_FALSE(s.findInflight(3)->released);
  EXPECT_EQ(stats_.messages_expired, 2u);
  // The PUBCOMP for the released one completes it.
  sessions_.completeDelivery(s, 2);
  EXPECT_EQ(s.inflight.size(), 2u);
}

TEST_F(Flow, AShareGroupDoesNotHandOutAnExpiredMessage) {
  Session& a = session("a");
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  ASSERT_NE(g, nullptr);
  // Queued while no member was online; the first one's lifetime ended since.
  router_.route(message("jobs/2", 1));
  g->work->queue.push_front(GroupEntry{expiring("jobs/1", 1, clock_.wallMs() - 1)});
  EXPECT_EQ(g->queued(), 2u);
  Connection& c = connect(a);
  groups_.dispatch(*g);
  EXPECT_EQ(publishes(c.out()), 1u);
  ASSERT_EQ(a.inflight.size(), 1u);
  EXPECT_EQ(a.inflight.front().d.msg->topic, "jobs/2");
  EXPECT_EQ(g->queued(), 0u);
  EXPECT_EQ(stats_.messages_expired, 1u);
}

TEST_F(Flow, AShareGroupWhoseLastMemberLeftGoesOnceWhatItHadInFlightIsAcknowledged) {
  Session& a = session("a");
  Connection& c = connect(a, mqtt::Version::V5, /*receive_max=*/2);
  subscribe(a, "jobs/#", 1, 0, false, "workers");
  for (int i = 0; i < 2; ++i) router_.route(message("jobs/x", 1));
  EXPECT_EQ(publishes(c.out()), 2u);
  router_.unsubscribe(a, "$share/workers/jobs/#");
  a.subscriptions.erase("$share/workers/jobs/#");
  SharedGroup* g = router_.tree().findGroup("jobs/#", "workers", false);
  ASSERT_NE(g, nullptr);  // two of its messages are still with the member
  EXPECT_EQ(g->work->inflight, 2u);
  EXPECT_EQ(router_.route(message("jobs/x", 1)).matched, 0u);
  sessions_.completeDelivery(a, a.inflight.front().packet_id);
  groups_.dropEmptied();
  EXPECT_NE(router_.tree().findGroup("jobs/#", "workers", false), nullptr);
  sessions_.completeDelivery(a, a.inflight.front().packet_id);
  // Still held by the caller that released its last message; gone at the
  // end of the loop turn.
  EXPECT_NE(router_.tree().findGroup("jobs/#", "workers", false), nullptr);
  groups_.dropEmptied();
  EXPECT_EQ(router_.tree().findGroup("jobs/#", "workers", false), nullptr);
  EXPECT_EQ(groups_.byOwner(SharedGroup::ownerKey("workers", "jobs/#")), nullptr);
  EXPECT_EQ(router_.route(message("jobs/x", 1)).matched, 0u);
}

}  // namespace
}  // namespace petrel
