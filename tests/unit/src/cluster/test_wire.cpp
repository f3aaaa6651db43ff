// A message between nodes: what is sent is what is received.
#include <gtest/gtest.h>

#include "src/cluster/wire.h"

namespace petrel::cluster {
namespace {

TEST(ClusterWire, RoundTripWithoutProperties) {
  Message m;
  m.qos = 2;
  m.retain = true;
  m.expires_at_ms = 1'800'000'000'123;
  m.payload = std::string("\0bytes\xFF", 7);
  std::string body;
  encodeWire(m, 0x0102030405060708ull, 42, body);
  Message out;
  WireInfo info;
  ASSERT_TRUE(decodeWire(reinterpret_cast<const uint8_t*>(body.data()), body.size(), out, info));
  EXPECT_EQ(info.node, 0x0102030405060708ull);
  EXPECT_EQ(info.seq, 42u);
  EXPECT_EQ(out.qos, 2);
  EXPECT_TRUE(out.retain);
  EXPECT_EQ(out.expires_at_ms, m.expires_at_ms);
  EXPECT_EQ(out.payload, m.payload);
  EXPECT_EQ(out.props, nullptr);
  EXPECT_FALSE(out.from_bridge);
}

TEST(ClusterWire, WhatCameOverABridgeStaysMarked) {
  // Two nodes bridged to one remote broker: what one node's bridge brought
  // in is not sent back out by the other's.
  Message m;
  m.from_bridge = true;
  std::string body;
  encodeWire(m, 1, 1, body);
  Message out;
  WireInfo info;
  ASSERT_TRUE(decodeWire(reinterpret_cast<const uint8_t*>(body.data()), body.size(), out, info));
  EXPECT_TRUE(out.from_bridge);
}

TEST(ClusterWire, PropertiesForwardedToSubscribersTravel) {
  Message m;
  m.qos = 1;
  auto p = std::make_shared<mqtt::Properties>();
  p->payload_format_indicator = 1;
  p->content_type = "application/json";
  p->response_topic = "reply/here";
  p->correlation_data = std::string("\x01\x02", 2);
  p->user_properties = {{"k", "v"}, {"k", "v2"}};
  m.props = p;
  m.payload = "{}";
  std::string body;
  encodeWire(m, 1, 1, body);
  Message out;
  WireInfo info;
  ASSERT_TRUE(decodeWire(reinterpret_cast<const uint8_t*>(body.data()), body.size(), out, info));
  ASSERT_NE(out.props, nullptr);
  EXPECT_EQ(*out.props, *p);
  EXPECT_EQ(out.payload, "{}");
  EXPECT_FALSE(out.retain);
  EXPECT_EQ(out.qos, 1);
}

TEST(ClusterWire, EmptyPayload) {
  Message m;
  std::string body;
  encodeWire(m, 9, 3, body);
  EXPECT_EQ(body.size(), kWireHeader);
  Message out;
  WireInfo info;
  ASSERT_TRUE(decodeWire(reinterpret_cast<const uint8_t*>(body.data()), body.size(), out, info));
  EXPECT_EQ(out.payload, "");
}

TEST(ClusterWire, WhatNoNodeSendsIsRefused) {
  Message m;
  m.payload = "x";
  std::string body;
  encodeWire(m, 1, 1, body);
  Message out;
  WireInfo info;
  auto decode = [&](const std::string& b) {
    return decodeWire(reinterpret_cast<const uint8_t*>(b.data()), b.size(), out, info);
  };
  EXPECT_TRUE(decode(body));
  for (size_t n = 0; n < kWireHeader; ++n) EXPECT_FALSE(decode(body.substr(0, n))) << n;  // cut short
  std::string v2 = body;
  v2[0] = 2;  // a later version
  EXPECT_FALSE(decode(v2));
  std::string qos3 = body;
  qos3[1] = 3;
  EXPECT_FALSE(decode(qos3));
  std::string unknown_flag = body;
  unknown_flag[1] = 0x20;
  EXPECT_FALSE(decode(unknown_flag));
  std::string bad_props = body;
  bad_props[1] = 0x08;  // properties flagged, the payload 'x' is no property list
  EXPECT_FALSE(decode(bad_props));
}

}  // namespace
TEST(ClusterWire, BatchEntriesRoundTripAndATruncatedOneIsBad) {
  std::string batch;
  appendBatchEntry("a/b", "body-1", batch);
  appendBatchEntry("", std::string(70000, 'x'), batch);  // lengths past 16 bits
  appendBatchEntry("c", "", batch);
  size_t pos = 0;
  std::string_view topic, body;
  bool bad = true;
  ASSERT_TRUE(nextBatchEntry(batch, pos, topic, body, bad));
  EXPECT_EQ(topic, "a/b");
  EXPECT_EQ(body, "body-1");
  ASSERT_TRUE(nextBatchEntry(batch, pos, topic, body, bad));
  EXPECT_EQ(topic, "");
  EXPECT_EQ(body.size(), 70000u);
  ASSERT_TRUE(nextBatchEntry(batch, pos, topic, body, bad));
  EXPECT_EQ(topic, "c");
  EXPECT_EQ(body, "");
  EXPECT_FALSE(nextBatchEntry(batch, pos, topic, body, bad));
  EXPECT_FALSE(bad);  // the end
  for (size_t cut = 1; cut < 20; ++cut) {
    const std::string part = batch.substr(0, batch.size() - cut);
    pos = 0;
    size_t n = 0;
    while (nextBatchEntry(part, pos, topic, body, bad)) ++n;
    // The last entry is 9 bytes: without all of it the batch ends cleanly
    // after the second; with part of it (or of the second) it is bad.
    EXPECT_EQ(n, cut <= 9 ? 2u : 1u) << cut;
    EXPECT_EQ(bad, cut != 9) << cut;
  }
}

}  // namespace petrel::cluster
