// Which NATS and JetStream answers make a node try a message again and
// which give it up: a message given up is acknowledged to its publisher
// without the other nodes' copy, so only a refusal no retry can change
// (too large) may give it up.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include "src/cluster/nats_options.h"

namespace petrel::cluster {
namespace {

TEST(NatsErrors, OnlyTooLargeIsRefusedForGood) {
  EXPECT_TRUE(refusedForGood(NATS_MAX_PAYLOAD, 0));
  EXPECT_TRUE(refusedForGood(NATS_ERR, JSStreamMessageExceedsMaximumErr));
}

TEST(NatsErrors, AStreamBetweenLeadersIsTriedAgain) {
  // A proposal that failed while the leader changed: 503, no error code.
  EXPECT_FALSE(refusedForGood(NATS_ERR, 0));
  EXPECT_FALSE(refusedForGood(NATS_ERR, JSClusterNotAvailErr));
  EXPECT_FALSE(refusedForGood(NATS_ERR, JSStreamStoreFailedErr));
  EXPECT_FALSE(refusedForGood(NATS_ERR, JSInsufficientResourcesErr));
  EXPECT_FALSE(refusedForGood(NATS_ERR, JSStreamNotFoundErr));
  EXPECT_FALSE(refusedForGood(NATS_TIMEOUT, 0));
  EXPECT_FALSE(refusedForGood(NATS_NO_RESPONDERS, 0));
}

TEST(NatsErrors, LinkTroubleIsTransient) {
  EXPECT_TRUE(transientNatsError(NATS_TIMEOUT));
  EXPECT_TRUE(transientNatsError(NATS_NO_RESPONDERS));
  EXPECT_TRUE(transientNatsError(NATS_CONNECTION_DISCONNECTED));
  // The client's buffer for a reconnect is full: the link comes back.
  EXPECT_TRUE(transientNatsError(NATS_INSUFFICIENT_BUFFER));
  EXPECT_FALSE(refusedForGood(NATS_INSUFFICIENT_BUFFER, 0));
  EXPECT_FALSE(transientNatsError(NATS_ERR));
  EXPECT_FALSE(transientNatsError(NATS_MAX_PAYLOAD));
}

}  // namespace
}  // namespace petrel::cluster
