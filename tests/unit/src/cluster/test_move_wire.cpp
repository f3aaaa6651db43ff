// The messages that move a session between nodes: what is sent is what is
// received, and nothing else is taken for one.
#include <gtest/gtest.h>

#include "src/cluster/move_wire.h"

namespace petrel::cluster {
namespace {

MovePart fullPart() {
  MovePart p;
  p.status = MoveStatus::Part;
  p.has_session = true;
  p.last = true;
  p.next = 12345;
  p.session.version = 5;
  p.session.expiry_interval = 3600;
  p.session.username = "dev-7";
  persistence::SubscriptionRecord s;
  s.key = "$share/g/a/+";
  s.group = "g";
  s.filter = "a/+";
  s.qos = 2;
  s.no_local = true;
  s.subscription_id = 42;
  p.subscriptions.push_back(s);
  s = {};
  s.key = "b/#";
  s.filter = "b/#";
  s.qos = 1;
  p.subscriptions.push_back(s);
  p.inbound_qos2 = {1, 77, 65535};
  for (uint64_t i = 0; i < 3; ++i) {
    MoveEntry e;
    e.queue.seq = 100 + i;
    e.queue.msg_id = 9000 + i;
    e.queue.qos = static_cast<uint8_t>(1 + i % 2);
    e.queue.packet_id = static_cast<uint16_t>(i == 0 ? 17 : 0);
    e.queue.released = i == 0;
    e.queue.bytes = 5;
    e.queue.subscription_ids = {42};
    e.message.topic = "a/" + std::to_string(i);
    e.message.payload = std::string("\0pay\xFF", 5);
    e.message.qos = e.queue.qos;
    e.message.origin = "pub";
    e.message.expires_at_ms = 1'800'000'000'000;
    e.node = i ? 0xABCDEF0102030405ull : 0;
    e.seq = i * 1000;
    p.entries.push_back(e);
  }
  return p;
}

TEST(ClusterMoveWire, TakeRoundTrip) {
  MoveTake t;
  t.phase = 2;
  t.from = 987654321;
  t.reply_to = "node_2Eb";
  t.client_id = "sensor/ä 1";
  std::string body;
  encodeMoveTake({MoveKind::Take, 7, 0x0102030405060708ull}, t, body);
  MoveHeader h;
  ASSERT_TRUE(decodeMoveHeader(body, h));
  EXPECT_EQ(h.kind, MoveKind::Take);
  EXPECT_EQ(h.move, 7u);
  EXPECT_EQ(h.node, 0x0102030405060708ull);
  MoveTake out;
  ASSERT_TRUE(decodeMoveTake(body, out));
  EXPECT_EQ(out.phase, 2);
  EXPECT_EQ(out.from, t.from);
  EXPECT_EQ(out.reply_to, t.reply_to);
  EXPECT_EQ(out.client_id, t.client_id);
}

TEST(ClusterMoveWire, ResumeIsATakeOfTheRest) {
  std::string body;
  encodeMoveTake({MoveKind::Resume, 4, 8}, MoveTake{2, 501, "old", "c-9"}, body);
  MoveHeader h;
  ASSERT_TRUE(decodeMoveHeader(body, h));
  EXPECT_EQ(h.kind, MoveKind::Resume);
  MoveTake t;
  ASSERT_TRUE(decodeMoveTake(body, t));
  EXPECT_EQ(t.from, 501u);
  EXPECT_EQ(t.reply_to, "old");
}

TEST(ClusterMoveWire, FinishAndDiscardCarryTheClient) {
  for (MoveKind k : {MoveKind::Finish, MoveKind::Discard}) {
    std::string body;
    encodeMoveClient({k, 3, 9}, "c-1", body);
    MoveHeader h;
    ASSERT_TRUE(decodeMoveHeader(body, h));
    EXPECT_EQ(h.kind, k);
    std::string cid;
    ASSERT_TRUE(decodeMoveClient(body, cid));
    EXPECT_EQ(cid, "c-1");
  }
}

TEST(ClusterMoveWire, PartRoundTrip) {
  const MovePart p = fullPart();
  std::string body;
  encodeMovePart({MoveKind::Part, 5, 6}, p, body);
  MovePart out;
  ASSERT_TRUE(decodeMovePart(body, out));
  EXPECT_EQ(out.status, MoveStatus::Part);
  EXPECT_TRUE(out.has_session);
  EXPECT_TRUE(out.last);
  EXPECT_EQ(out.next, 12345u);
  EXPECT_EQ(out.session.version, 5);
  EXPECT_EQ(out.session.expiry_interval, 3600u);
  EXPECT_EQ(out.session.username, std::optional<std::string>("dev-7"));
  ASSERT_EQ(out.subscriptions.size(), 2u);
  EXPECT_EQ(out.subscriptions[0].key, "$share/g/a/+");
  EXPECT_EQ(out.subscriptions[0].group, "g");
  EXPECT_EQ(out.subscriptions[0].filter, "a/+");
  EXPECT_EQ(out.subscriptions[0].qos, 2);
  EXPECT_TRUE(out.subscriptions[0].no_local);
  EXPECT_EQ(out.subscriptions[0].subscription_id, 42u);
  EXPECT_EQ(out.subscriptions[1].key, "b/#");
  EXPECT_EQ(out.inbound_qos2, (std::vector<uint16_t>{1, 77, 65535}));
  ASSERT_EQ(out.entries.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const MoveEntry& a = p.entries[i];
    const MoveEntry& b = out.entries[i];
    EXPECT_EQ(b.queue.seq, a.queue.seq);
    EXPECT_EQ(b.queue.msg_id, a.queue.msg_id);
    EXPECT_EQ(b.queue.qos, a.queue.qos);
    EXPECT_EQ(b.queue.packet_id, a.queue.packet_id);
    EXPECT_EQ(b.queue.released, a.queue.released);
    EXPECT_EQ(b.queue.subscription_ids, a.queue.subscription_ids);
    EXPECT_EQ(b.message.topic, a.message.topic);
    EXPECT_EQ(b.message.payload, a.message.payload);
    EXPECT_EQ(b.message.origin, a.message.origin);
    EXPECT_EQ(b.message.expires_at_ms, a.message.expires_at_ms);
    EXPECT_EQ(b.node, a.node);
    EXPECT_EQ(b.seq, a.seq);
  }
}

TEST(ClusterMoveWire, AnswersWithoutEntries) {
  for (MoveStatus st : {MoveStatus::None, MoveStatus::Busy, MoveStatus::Wait}) {
    MovePart p;
    p.status = st;
    std::string body;
    encodeMovePart({MoveKind::Part, 1, 2}, p, body);
    MovePart out;
    ASSERT_TRUE(decodeMovePart(body, out));
    EXPECT_EQ(out.status, st);
    EXPECT_FALSE(out.has_session);
    EXPECT_TRUE(out.entries.empty());
  }
}

TEST(ClusterMoveWire, EveryTruncationAndTrailingByteIsRefused) {
  std::string body;
  encodeMovePart({MoveKind::Part, 5, 6}, fullPart(), body);
  for (size_t n = 0; n < body.size(); ++n) {
    MovePart out;
    EXPECT_FALSE(decodeMovePart(std::string_view(body).substr(0, n), out)) << n;
  }
  MovePart out;
  EXPECT_FALSE(decodeMovePart(body + "x", out));
  std::string take;
  encodeMoveTake({MoveKind::Take, 1, 2}, MoveTake{1, 0, "n", "c"}, take);
  for (size_t n = 0; n < take.size(); ++n) {
    MoveTake t;
    MoveHeader h;
    EXPECT_FALSE(decodeMoveTake(std::string_view(take).substr(0, n), t) && decodeMoveHeader(take.substr(0, n), h))
        << n;
  }
}

TEST(ClusterMoveWire, OtherVersionsKindsAndStatusesAreRefused) {
  std::string body;
  encodeMoveClient({MoveKind::Finish, 1, 2}, "c", body);
  MoveHeader h;
  std::string bad = body;
  bad[0] = 2;  // another version
  EXPECT_FALSE(decodeMoveHeader(bad, h));
  bad = body;
  bad[1] = 'Z';  // no such kind
  EXPECT_FALSE(decodeMoveHeader(bad, h));
  MovePart p;
  p.status = MoveStatus::Wait;
  encodeMovePart({MoveKind::Part, 1, 2}, p, body);
  bad = body;
  bad[18] = 9;  // no such status
  MovePart out;
  EXPECT_FALSE(decodeMovePart(bad, out));
  bad = body;
  bad[19] = 4;  // an unknown flag
  EXPECT_FALSE(decodeMovePart(bad, out));
  MoveTake t;
  encodeMoveTake({MoveKind::Take, 1, 2}, MoveTake{3, 0, "n", "c"}, body);  // no phase 3
  EXPECT_FALSE(decodeMoveTake(body, t));
}

}  // namespace
}  // namespace petrel::cluster
