// What the other nodes want: a set of filters that matches as MQTT does,
// and the table of announcements with its generations, "all" and expiry.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include <random>
#include <string>
#include <vector>

#include "mqtt/topic.h"
#include "src/cluster/remote_interest.h"
#include "src/cluster/wire.h"

namespace petrel::cluster {
namespace {

TEST(ClusterFilterSet, MatchesAsMqttDoes) {
  std::mt19937 rng(5);
  const std::vector<std::string> levels = {"a", "b", "", "$x", "c.d", "+", "#"};
  std::uniform_int_distribution<size_t> pick(0, levels.size() - 1), count(1, 4);
  auto make = [&](bool filter) {
    std::string out;
    const size_t n = count(rng);
    for (size_t i = 0; i < n; ++i) {
      std::string l = levels[pick(rng)];
      if (!filter && (l == "+" || l == "#")) l = "z";
      if (filter && l == "#" && i + 1 < n) l = "+";
      if (i) out += '/';
      out += l;
    }
    return out;
  };
  for (int round = 0; round < 200; ++round) {
    FilterSet set;
    std::vector<std::string> filters;
    for (int i = 0; i < 5; ++i) {
      std::string f = make(true);
      if (!mqtt::validTopicFilter(f)) continue;
      set.add(f);
      filters.push_back(f);
    }
    for (int t = 0; t < 50; ++t) {
      const std::string topic = make(false);
      if (!mqtt::validTopicName(topic)) continue;
      bool want = false;
      for (const auto& f : filters) want = want || mqtt::topicMatches(f, topic);
      ASSERT_EQ(set.matches(topic), want) << topic;
    }
    // Removing every add leaves nothing, whatever the order.
    for (const auto& f : filters) set.remove(f);
    EXPECT_EQ(set.size(), 0u);
    EXPECT_FALSE(set.matches("a"));
  }
}

TEST(ClusterFilterSet, CountsEachAdd) {
  FilterSet set;
  set.add("a/#");
  set.add("a/#");
  EXPECT_EQ(set.size(), 1u);
  set.remove("a/#");
  EXPECT_TRUE(set.matches("a"));  // one add left
  set.remove("a/#");
  EXPECT_FALSE(set.matches("a/b"));
  set.remove("a/#");  // more removes than adds: nothing
  set.remove("never/added");
  EXPECT_EQ(set.size(), 0u);
}

TEST(ClusterRemoteInterest, GenerationsReplaceOnlyAtTheEnd) {
  RemoteInterest r;
  r.add(7, 1, "a/#", 0);
  r.add(7, 1, "b", 0);
  r.end(7, 1, 0);
  EXPECT_TRUE(r.wants("a/x"));
  EXPECT_TRUE(r.wants("b"));
  // Generation 2 lists only "b" and "c/+": until its end, "a/#" stays.
  r.add(7, 2, "b", 10);
  r.add(7, 2, "c/+", 10);
  EXPECT_TRUE(r.wants("a/x"));
  r.end(7, 2, 10);
  EXPECT_FALSE(r.wants("a/x"));
  EXPECT_TRUE(r.wants("b"));
  EXPECT_TRUE(r.wants("c/d"));
  // Another node's filters are its own.
  r.add(8, 1, "b", 10);
  r.remove(7, "b", 11);
  EXPECT_TRUE(r.wants("b"));
  r.remove(8, "b", 11);
  EXPECT_FALSE(r.wants("b"));
  EXPECT_EQ(r.nodes(), 2u);
}

TEST(ClusterRemoteInterest, AllUntilAFullAnnouncementWithoutIt) {
  RemoteInterest r;
  r.all(3, 1, 0);
  r.end(3, 1, 0);
  EXPECT_TRUE(r.wants("anything/at/all"));
  EXPECT_TRUE(r.wants("$app/x"));
  r.add(3, 2, "only/this", 5);
  EXPECT_TRUE(r.wants("anything"));  // not before the end
  r.end(3, 2, 5);
  EXPECT_FALSE(r.wants("anything"));
  EXPECT_TRUE(r.wants("only/this"));
}

TEST(ClusterRemoteInterest, NodesNotHeardFromAreForgotten) {
  RemoteInterest r;
  r.add(1, 1, "x", 1000);
  r.all(2, 1, 1000);
  r.add(3, 1, "y", 5000);
  r.expire(2000);
  EXPECT_FALSE(r.wants("x"));
  EXPECT_FALSE(r.wants("z"));  // node 2's "all" went with it
  EXPECT_TRUE(r.wants("y"));
  EXPECT_EQ(r.nodes(), 1u);
}

TEST(ClusterRemoteInterest, ANodeThatSaysByeIsForgottenAtOnce) {
  RemoteInterest r;
  r.add(1, 1, "x", 1000);
  r.all(2, 1, 1000);
  r.forget(2);
  r.forget(9);  // never heard of
  EXPECT_TRUE(r.wants("x"));
  EXPECT_FALSE(r.wants("z"));
  EXPECT_EQ(r.nodes(), 1u);
  r.forget(1);
  EXPECT_FALSE(r.wants("x"));
  EXPECT_EQ(r.filters(), 0u);
}

TEST(ClusterControl, StatusRoundTripsAndByeHasNoRest) {
  NodeStatus st;
  st.clients = 1;
  st.sessions = 0xFFFFFFFFFFull;
  st.filters = 3;
  st.sent = 4;
  st.received = 5;
  st.retained = 6;
  st.name = "node-\xC3\xA9 7";
  std::string rest, body;
  encodeStatus(st, rest);
  encodeControl(ControlKind::Status, 9, 1, rest, body);
  Control c;
  ASSERT_TRUE(decodeControl(reinterpret_cast<const uint8_t*>(body.data()), body.size(), c));
  EXPECT_EQ(c.kind, ControlKind::Status);
  NodeStatus back;
  ASSERT_TRUE(decodeStatus(c.filter, back));
  EXPECT_EQ(back.clients, 1u);
  EXPECT_EQ(back.sessions, 0xFFFFFFFFFFull);
  EXPECT_EQ(back.filters, 3u);
  EXPECT_EQ(back.sent, 4u);
  EXPECT_EQ(back.received, 5u);
  EXPECT_EQ(back.retained, 6u);
  EXPECT_EQ(back.name, st.name);
  EXPECT_FALSE(decodeStatus(std::string_view(rest).substr(0, 48), back));  // no name
  EXPECT_FALSE(decodeStatus(std::string_view(rest).substr(0, 20), back));
  encodeControl(ControlKind::Status, 9, 1, "", body);
  EXPECT_FALSE(decodeControl(reinterpret_cast<const uint8_t*>(body.data()), body.size(), c));  // without a status
  for (ControlKind k : {ControlKind::Bye, ControlKind::Query}) {
    encodeControl(k, 9, 1, "", body);
    ASSERT_TRUE(decodeControl(reinterpret_cast<const uint8_t*>(body.data()), body.size(), c));
    EXPECT_EQ(c.kind, k);
  }
  EXPECT_FALSE(decodeControl(reinterpret_cast<const uint8_t*>((body + "x").data()), body.size() + 1, c));
  // Another node's sessions served by this one: its name's token follows.
  encodeControl(ControlKind::Adopted, 9, 1, "node-a", body);
  ASSERT_TRUE(decodeControl(reinterpret_cast<const uint8_t*>(body.data()), body.size(), c));
  EXPECT_EQ(c.kind, ControlKind::Adopted);
  EXPECT_EQ(c.filter, "node-a");
  encodeControl(ControlKind::Adopted, 9, 1, "", body);
  EXPECT_FALSE(decodeControl(reinterpret_cast<const uint8_t*>(body.data()), body.size(), c));  // without a name
}

TEST(ClusterRegistry, RegistrationRoundTripsAndShortValuesAreRefused) {
  std::string v;
  encodeRegistration(0x0102030405060708ull, 42, "node-1", v);
  Registration r;
  ASSERT_TRUE(decodeRegistration(v, r));
  EXPECT_EQ(r.node, 0x0102030405060708ull);
  EXPECT_EQ(r.seq, 42u);
  EXPECT_EQ(r.name, "node-1");
  EXPECT_FALSE(decodeRegistration(std::string_view(v).substr(0, 15), r));
  ASSERT_TRUE(decodeRegistration(std::string_view(v).substr(0, 16), r));  // a name is not needed
  EXPECT_EQ(r.name, "");
}

TEST(ClusterControl, RoundTripAndRefusals) {
  std::string body;
  encodeControl(ControlKind::Add, 0xA1B2C3D4E5F60718ull, 42, "a/+/#", body, 0x0102030405060708ull);
  Control c;
  ASSERT_TRUE(decodeControl(reinterpret_cast<const uint8_t*>(body.data()), body.size(), c));
  EXPECT_EQ(c.kind, ControlKind::Add);
  EXPECT_EQ(c.node, 0xA1B2C3D4E5F60718ull);
  EXPECT_EQ(c.gen, 42u);
  EXPECT_EQ(c.index, 0x0102030405060708ull);
  EXPECT_EQ(c.filter, "a/+/#");
  for (ControlKind k : {ControlKind::All, ControlKind::End, ControlKind::Hello}) {
    encodeControl(k, 1, 2, "", body);
    ASSERT_TRUE(decodeControl(reinterpret_cast<const uint8_t*>(body.data()), body.size(), c));
    EXPECT_EQ(c.kind, k);
    EXPECT_TRUE(c.filter.empty());
  }
  auto refused = [&](std::string b) {
    return !decodeControl(reinterpret_cast<const uint8_t*>(b.data()), b.size(), c);
  };
  encodeControl(ControlKind::Add, 1, 2, "f", body);
  EXPECT_TRUE(refused(body.substr(0, 26)));  // an add without its filter
  encodeControl(ControlKind::End, 1, 2, "", body);
  EXPECT_TRUE(refused(body + "x"));  // an end with one
  EXPECT_TRUE(refused(body.substr(0, 25)));
  std::string unknown = body;
  unknown[1] = 'Z';
  EXPECT_TRUE(refused(unknown));
  std::string v2 = body;
  v2[0] = 2;
  EXPECT_TRUE(refused(v2));
}

}  // namespace
// Which nodes a message goes to through the stream: each node by its own
// filters, "all" included; a forgotten node by none.
TEST(ClusterRemoteInterest, EachNodeWantingATopic) {
  RemoteInterest r;
  r.add(1, 1, "a/+", 0);
  r.add(2, 1, "a/#", 0);
  r.add(3, 1, "b/c", 0);
  r.all(4, 1, 0);
  auto wanting = [&](std::string_view topic) {
    std::vector<uint64_t> ids;
    r.forEachWanting(topic, [&](uint64_t id) { ids.push_back(id); });
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  EXPECT_EQ(wanting("a/x"), (std::vector<uint64_t>{1, 2, 4}));
  EXPECT_EQ(wanting("a"), (std::vector<uint64_t>{2, 4}));
  EXPECT_EQ(wanting("b/c"), (std::vector<uint64_t>{3, 4}));
  // '+' and '#' do not match a '$' topic; "all" takes it (the receiving
  // node applies MQTT's rule to its own subscriptions).
  EXPECT_EQ(wanting("$app/x"), (std::vector<uint64_t>{4}));
  r.remove(2, "a/#", 0);
  EXPECT_EQ(wanting("a"), (std::vector<uint64_t>{4}));
  r.end(1, 2, 0);  // a full announcement without a/+
  EXPECT_EQ(wanting("a/x"), (std::vector<uint64_t>{4}));
  r.forget(4);
  EXPECT_EQ(wanting("a/x"), (std::vector<uint64_t>{}));
  EXPECT_TRUE(r.knows(3));
  EXPECT_FALSE(r.knows(4));
}

}  // namespace petrel::cluster
