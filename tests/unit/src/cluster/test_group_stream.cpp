// Share groups across the cluster: a group's id, subject and its copies'
// message ids are the same on every node and for every release (nodes of
// one cluster must agree on them), and differ between groups and messages.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "src/cluster/group_stream.h"
#include "src/cluster/subjects.h"

namespace petrel::cluster {
namespace {

TEST(GroupId, FixedAcrossReleases) {
  // FNV-1a 64 of "workers" NUL "jobs/#": a change here splits a cluster
  // whose nodes run different releases into two halves of each group.
  EXPECT_EQ(groupId("workers", "jobs/#"), 0xeb22c05a4073225eULL);
  EXPECT_EQ(groupId("", ""), 0xaf63bd4c8601b7dfULL);  // FNV-1a 64 of one NUL byte
}

TEST(GroupId, NameAndFilterDoNotRunTogether) {
  // "a" + "b/c" and "ab" + "/c" would hash alike without the separator.
  EXPECT_NE(groupId("a", "b/c"), groupId("ab", "/c"));
  EXPECT_NE(groupId("g", "a/#"), groupId("g", "a/+"));
  EXPECT_NE(groupId("g1", "a/#"), groupId("g2", "a/#"));
  std::set<uint64_t> ids;
  for (int g = 0; g < 100; ++g)
    for (int f = 0; f < 100; ++f) ids.insert(groupId("group" + std::to_string(g), "t/" + std::to_string(f) + "/#"));
  EXPECT_EQ(ids.size(), 10000u);
}

TEST(GroupSubject, OneTokenOfHexUnderTheClusterName) {
  const std::string s = groupSubject("petrel", 0x00ab);
  EXPECT_EQ(s, "petrel.g.00000000000000ab");
  EXPECT_EQ(groupSubject("petrel", ~0ULL), "petrel.g.ffffffffffffffff");
  // Never one of the subjects a topic maps to, nor the nodes' stream's.
  std::string topic;
  EXPECT_FALSE(subjectTopic("petrel", s, topic));
}

TEST(GroupMsgId, TheMessageAndTheGroup) {
  const std::string id = groupMsgId(0x1234, 77, 0xabc);
  EXPECT_EQ(id, "g0000000000001234.4d.0000000000000abc");
  // Another node, another number, another group: another id.
  EXPECT_NE(groupMsgId(0x1235, 77, 0xabc), id);
  EXPECT_NE(groupMsgId(0x1234, 78, 0xabc), id);
  EXPECT_NE(groupMsgId(0x1234, 77, 0xabd), id);
  // The stream's own copies' ids have a '-' (Stream's token parse): these
  // never do.
  EXPECT_EQ(id.find('-'), std::string::npos);
}

}  // namespace
}  // namespace petrel::cluster
