// Share groups' JetStream side against a real nats-server (Debian package
// nats-server): what a node took from a group's consumer is acknowledged
// through its subscription after the group left the node, and what waits
// in a subscription is taken without asking JetStream for more.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "src/cluster/group_stream.h"
#include "src/cluster/nats_options.h"
#include "tests/unit/temp_dir.h"

namespace petrel::cluster {
namespace {

using Clock = std::chrono::steady_clock;

int freePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    std::abort();
  close(fd);
  return ntohs(a.sin_port);
}

std::string natsServerPath() {
  const char* path = std::getenv("PATH");
  std::string dirs = std::string(path ? path : "") + ":/usr/sbin:/usr/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = dirs.substr(start, end - start) + "/nats-server";
    if (end > start && access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

// Until `done` holds or `ms` pass; whether it held.
bool waitFor(const std::function<bool()>& done, int ms = 10000) {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!done()) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

int pendingIn(natsSubscription* sub) {
  int msgs = 0;
  int bytes = 0;
  return natsSubscription_GetPending(sub, &msgs, &bytes) == NATS_OK ? msgs : -1;
}

// One nats-server with JetStream on a free loopback port, a connection to
// it and the stream "t_groups" (subjects "t.g.>", a work queue, as the
// nodes make it).
class GroupStreamNats : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string bin = natsServerPath();
    ASSERT_FALSE(bin.empty()) << "nats-server not installed (Debian package nats-server)";
    const std::string port = std::to_string(freePort());
    const std::string store = dir_.sub("js");
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execl(bin.c_str(), bin.c_str(), "-a", "127.0.0.1", "-p", port.c_str(), "--jetstream", "--store_dir",
            store.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    const std::string url = "nats://127.0.0.1:" + port;
    ASSERT_TRUE(waitFor([&] { return natsConnection_ConnectTo(&nc_, url.c_str()) == NATS_OK; }))
        << "nats-server did not come up on " << url;
    int st = NATS_OK;
    js_ = jetStreamOf(nc_, 5000, st);
    ASSERT_NE(js_, nullptr) << natsErrorText(st);
    jsStreamConfig c;
    jsStreamConfig_Init(&c);
    const char* subjects[] = {"t.g.>"};
    c.Name = "t_groups";
    c.Subjects = subjects;
    c.SubjectsLen = 1;
    c.Retention = js_WorkQueuePolicy;
    c.Storage = js_FileStorage;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_AddStream(&si, js_, &c, nullptr, &jerr), NATS_OK) << natsErrorText(NATS_ERR) << " " << jerr;
    jsStreamInfo_Destroy(si);
  }

  void TearDown() override {
    if (js_) jsCtx_Destroy(js_);
    if (nc_) natsConnection_Destroy(nc_);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }

  void publish(const std::string& subject, const std::string& body) {
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    ASSERT_EQ(js_Publish(&pa, js_, subject.c_str(), body.data(), static_cast<int>(body.size()), nullptr, &jerr), NATS_OK)
        << jerr;
    jsPubAck_Destroy(pa);
  }

  // The consumer's count of messages not yet delivered, and of delivered
  // ones not yet acknowledged.
  void consumerCounts(const char* consumer, uint64_t& pending, int64_t& ack_pending) {
    jsConsumerInfo* ci = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    pending = ~0ULL;
    ack_pending = -1;
    if (js_GetConsumerInfo(&ci, js_, "t_groups", consumer, nullptr, &jerr) != NATS_OK) return;
    pending = ci->NumPending;
    ack_pending = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
  }

  TempDir dir_{"petrel-nats"};
  pid_t pid_ = -1;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

TEST_F(GroupStreamNats, TakeWaitingTakesWhatWaitsAndAsksForNothing) {
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = "c";
  cc.AckPolicy = js_AckExplicit;
  cc.FilterSubject = "t.g.1";
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_AddConsumer(&ci, js_, "t_groups", &cc, nullptr, &jerr), NATS_OK) << jerr;
  jsConsumerInfo_Destroy(ci);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "t_groups";
  so.Consumer = "c";
  natsSubscription* sub = nullptr;
  ASSERT_EQ(js_PullSubscribe(&sub, js_, "t.g.1", "c", nullptr, &so, &jerr), NATS_OK) << jerr;
  const std::string inbox = natsSubscription_GetSubject(sub);
  // A request of its own, as a fetch that gave up waiting leaves one:
  // JetStream's answer comes to the subscription with no fetch reading it.
  auto ask = [&] {
    ASSERT_EQ(natsConnection_PublishRequestString(nc_, "$JS.API.CONSUMER.MSG.NEXT.t_groups.c", inbox.c_str(),
                                                  "{\"batch\":1,\"no_wait\":true}"),
              NATS_OK);
    ASSERT_EQ(natsConnection_Flush(nc_), NATS_OK);
    ASSERT_TRUE(waitFor([&] { return pendingIn(sub) == 1; }));
  };

  // The stream is empty: the answer is a status ("no messages"). The
  // stream then gets a message; taking what waits takes the status only,
  // and asks for nothing: the message stays in the stream.
  ask();
  publish("t.g.1", "m1");
  natsMsgList list{};
  EXPECT_FALSE(takeWaiting(sub, list));
  EXPECT_EQ(list.Count, 0);
  EXPECT_EQ(pendingIn(sub), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(natsConnection_Flush(nc_), NATS_OK);
  EXPECT_EQ(pendingIn(sub), 0) << "takeWaiting asked JetStream for a message";
  uint64_t pending = 0;
  int64_t ack_pending = 0;
  consumerCounts("c", pending, ack_pending);
  EXPECT_EQ(pending, 1u);
  EXPECT_EQ(ack_pending, 0);

  // A message that came for such a request is taken.
  ask();
  ASSERT_TRUE(takeWaiting(sub, list));
  ASSERT_EQ(list.Count, 1);
  EXPECT_EQ(std::string(natsMsg_GetData(list.Msgs[0]), natsMsg_GetDataLength(list.Msgs[0])), "m1");
  EXPECT_EQ(natsMsg_Ack(list.Msgs[0], nullptr), NATS_OK);
  natsMsgList_Destroy(&list);
  EXPECT_FALSE(takeWaiting(sub, list));
  EXPECT_TRUE(waitFor([&] {
    consumerCounts("c", pending, ack_pending);
    return pending == 0 && ack_pending == 0;
  }));
  natsSubscription_Destroy(sub);
}

TEST_F(GroupStreamNats, WhatTheLoopHoldsIsAcknowledgedAfterItsGroupLeft) {
  // A node takes a group's messages for its members; the group then leaves
  // the node (its thread ends) while the loop still holds them. Their
  // acknowledgements go through the subscription they came by, which stays
  // open until the last of them is settled.
  GroupStream gs(nc_, "t_groups", "t", 30000, [] {});
  const uint64_t gid = groupId("workers", "jobs/#");
  const std::string subject = groupSubject("t", gid);
  char durable[24];
  std::snprintf(durable, sizeof(durable), "g_%016llx", static_cast<unsigned long long>(gid));
  gs.add(gid, "workers", "jobs/#");
  gs.setCredit(gid, 10);
  for (int i = 0; i < 3; ++i) publish(subject, "m" + std::to_string(i));
  std::vector<GroupStream::In> held;
  ASSERT_TRUE(waitFor([&] {
    std::vector<GroupStream::In> in;
    gs.take(in);
    for (auto& i : in) held.push_back(std::move(i));
    return held.size() >= 3;
  }));
  ASSERT_EQ(held.size(), 3u);
  gs.remove(gid);
  // The thread ends and lets go of its subscription: the three messages
  // alone keep it open.
  ASSERT_TRUE(waitFor([&] { return held[0].taken.sub.use_count() == 3; }));
  uint64_t pending = 0;
  int64_t ack_pending = 0;
  consumerCounts(durable, pending, ack_pending);
  EXPECT_EQ(ack_pending, 3);
  gs.nak(held[0].taken);  // back to JetStream: it comes again to whoever asks
  gs.ack(held[1].taken);
  gs.ack(held[2].taken);
  EXPECT_EQ(held[0].taken.msg, nullptr);
  EXPECT_EQ(held[2].taken.sub, nullptr);
  // The one given back comes again at once (not after the 30 s ack wait),
  // and nothing else is owed.
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = "t_groups";
  so.Consumer = durable;
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_PullSubscribe(&sub, js_, subject.c_str(), durable, nullptr, &so, &jerr), NATS_OK) << jerr;
  natsMsgList list{};
  ASSERT_EQ(natsSubscription_Fetch(&list, sub, 1, 5000, &jerr), NATS_OK) << jerr;
  ASSERT_EQ(list.Count, 1);
  EXPECT_EQ(std::string(natsMsg_GetData(list.Msgs[0]), natsMsg_GetDataLength(list.Msgs[0])), "m0");
  EXPECT_EQ(natsMsg_Ack(list.Msgs[0], nullptr), NATS_OK);
  natsMsgList_Destroy(&list);
  EXPECT_TRUE(waitFor([&] {
    consumerCounts(durable, pending, ack_pending);
    return pending == 0 && ack_pending == 0;
  })) << "pending " << pending << ", acknowledgements pending " << ack_pending;
  natsSubscription_Destroy(sub);
  gs.stop();
}

}  // namespace
}  // namespace petrel::cluster
