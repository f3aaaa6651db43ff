// AckGate and HeldOutput: when the answers to stored packets may go, and
// that everything written after them keeps its order.
#include <gtest/gtest.h>

#include "src/acks/held_output.h"

namespace petrel {
namespace {

TEST(AckGate, OpensWhenEveryReceiverHasAcknowledged) {
  AckGate g;
  EXPECT_TRUE(g.open());
  g.addReceiver();
  g.addReceiver();
  EXPECT_FALSE(g.open());
  EXPECT_FALSE(g.receiverDone());
  EXPECT_TRUE(g.receiverDone());  // the last one opens it
  EXPECT_TRUE(g.open());
  EXPECT_FALSE(g.receiverDone());  // an extra ack does not underflow
  EXPECT_EQ(g.pending(), 0u);
}

// One handler: mark, write, hold.
void handle(HeldOutput& h, std::string& out, const std::string& bytes, uint64_t ticket,
            const AckGatePtr& gate = nullptr) {
  const auto m = h.mark(out);
  (h.empty() ? out : h.tail()) += bytes;
  h.holdSince(m, out, ticket, gate);
}

TEST(HeldOutput, HoldsUntilTheTicketCommits) {
  HeldOutput h;
  std::string out = "before";
  handle(h, out, "ACK1", 5);
  EXPECT_EQ(out, "before");  // what was written earlier is not held
  EXPECT_EQ(h.bytes(), 4u);
  EXPECT_FALSE(h.release(4, out));
  EXPECT_EQ(out, "before");
  EXPECT_TRUE(h.release(5, out));
  EXPECT_EQ(out, "beforeACK1");
  EXPECT_TRUE(h.empty());
}

TEST(HeldOutput, LaterOutputWaitsBehindHeldOutput) {
  HeldOutput h;
  std::string out;
  handle(h, out, "ACK1", 3);
  h.tail() += "PING";  // written while held: goes after it
  EXPECT_TRUE(out.empty());
  h.release(3, out);
  EXPECT_EQ(out, "ACK1PING");
}

TEST(HeldOutput, OlderBatchIsNotKeptWaitingForANewerOne) {
  HeldOutput h;
  std::string out;
  handle(h, out, "A", 1);
  handle(h, out, "B", 2);
  EXPECT_TRUE(h.release(1, out));
  EXPECT_EQ(out, "A");
  EXPECT_FALSE(h.empty());
  h.release(2, out);
  EXPECT_EQ(out, "AB");
}

TEST(HeldOutput, NewerBatchNeverOvertakesAnOlderOne) {
  HeldOutput h;
  std::string out;
  handle(h, out, "A", 2);
  auto gate = std::make_shared<AckGate>();  // open: "B" may go early
  handle(h, out, "B", 3, gate);
  EXPECT_FALSE(h.release(1, out));  // A waits for 2, B behind it
  EXPECT_EQ(out, "");
  h.release(2, out);
  EXPECT_EQ(out, "AB");
}

TEST(HeldOutput, GateReleasesBeforeTheCommit) {
  HeldOutput h;
  std::string out;
  auto gate = std::make_shared<AckGate>();
  gate->addReceiver();
  handle(h, out, "PUBACK", 7, gate);
  EXPECT_FALSE(h.release(0, out));
  gate->receiverDone();
  EXPECT_TRUE(h.release(0, out));
  EXPECT_EQ(out, "PUBACK");
}

TEST(HeldOutput, ACommitNeedInTheSameBatchOverridesTheGate) {
  // Two packets in one batch: one may go on a gate, the other needs the
  // commit. The segment holds both, so the commit decides.
  HeldOutput h;
  std::string out;
  auto gate = std::make_shared<AckGate>();
  handle(h, out, "X", 4, gate);
  handle(h, out, "Y", 4);
  EXPECT_FALSE(h.release(3, out));
  EXPECT_TRUE(h.release(4, out));
  EXPECT_EQ(out, "XY");
}

TEST(HeldOutput, HandlerThatWroteNothingGetsAnEmptySegment) {
  HeldOutput h;
  std::string out;
  handle(h, out, "A", 1);
  handle(h, out, "", 2);  // a store write without output of its own
  h.tail() += "C";        // later output waits for batch 2
  h.release(1, out);
  EXPECT_EQ(out, "A");
  h.release(2, out);
  EXPECT_EQ(out, "AC");
}

TEST(HeldOutput, HoldStartedDuringAHandlerTakesItsEarlierBytes) {
  // The handler wrote "pre", then something inside it held output ("mid",
  // ticket 1); at the end the whole handler waits for ticket 2.
  HeldOutput h;
  std::string out = "old";
  const auto m = h.mark(out);
  out += "pre";
  handle(h, out, "mid", 1);
  h.holdSince(m, out, 2);
  EXPECT_EQ(out, "old");
  EXPECT_FALSE(h.release(1, out));
  h.release(2, out);
  EXPECT_EQ(out, "oldpremid");
}

TEST(HeldOutput, ClearDropsEverything) {
  HeldOutput h;
  std::string out;
  handle(h, out, "A", 1);
  h.clear();
  EXPECT_TRUE(h.empty());
  EXPECT_FALSE(h.release(10, out));
  EXPECT_EQ(out, "");
}

// Another node's copies of a message in the cluster's stream: a required
// gate holds the answer whatever the commit or the early gate say.
TEST(HeldOutput, ARequiredGateHoldsPastTheCommit) {
  HeldOutput h;
  std::string out;
  auto stored = std::make_shared<AckGate>();
  stored->addReceiver();
  stored->addReceiver();
  auto m = h.mark(out);
  out += "ACK1";
  h.holdSince(m, out, 5, nullptr, stored);
  EXPECT_FALSE(h.release(5, out));  // committed here, not yet in the stream
  EXPECT_EQ(out, "");
  stored->receiverDone();
  EXPECT_FALSE(h.release(9, out));
  stored->receiverDone();
  EXPECT_TRUE(h.release(5, out));
  EXPECT_EQ(out, "ACK1");
}

TEST(HeldOutput, ARequiredGateAloneHoldsWithoutAnyStoreWrite) {
  HeldOutput h;
  std::string out = "x";
  auto stored = std::make_shared<AckGate>();
  stored->addReceiver();
  auto m = h.mark(out);
  out += "ACK1";
  h.holdSince(m, out, 0, nullptr, stored);  // ticket 0: nothing to commit
  handle(h, out, "ACK2", 0);                 // written after it: waits behind it
  EXPECT_FALSE(h.release(0, out));
  EXPECT_EQ(out, "x");
  stored->receiverDone();
  EXPECT_TRUE(h.release(0, out));
  EXPECT_EQ(out, "xACK1ACK2");
  EXPECT_TRUE(h.empty());
}

TEST(HeldOutput, ARequiredGateWaitsForTheEarlyGateOrTheCommitToo) {
  HeldOutput h;
  std::string out;
  auto early = std::make_shared<AckGate>();
  early->addReceiver();
  auto stored = std::make_shared<AckGate>();
  stored->addReceiver();
  auto m = h.mark(out);
  out += "ACK1";
  h.holdSince(m, out, 7, early, stored);
  stored->receiverDone();
  EXPECT_FALSE(h.release(6, out));  // neither committed nor acknowledged by the receivers
  early->receiverDone();
  EXPECT_TRUE(h.release(6, out));
  EXPECT_EQ(out, "ACK1");
}

}  // namespace
}  // namespace petrel
