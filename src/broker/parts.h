// src/broker/parts.h — the broker's parts, built and wired in one place:
// each part gets, in its constructor, the parts it may call. Broker owns one
// BrokerParts; the in-process tests (tests/unit/src/broker) build the same
// one without listeners or sockets.
#pragma once

#include <uv.h>

#include "src/acks/ack_holds.h"
#include "src/config/config.h"
#include "src/delayed/delayed_publish.h"
#include "src/durable/durable.h"
#include "src/metrics/stats.h"
#include "src/queues/shared_groups.h"
#include "src/routing/router.h"
#include "src/security/security.h"
#include "src/sessions/output_budget.h"
#include "src/sessions/sessions.h"
#include "src/timers/loop_timers.h"

namespace petrel {

struct BrokerParts {
  BrokerParts(uv_loop_t* loop, Config cfg)
      : cfg_(std::move(cfg)),
        timers_(loop),
        clock_(timers_.clock()),
        security_(loop, cfg_),
        durable_(loop),
        budget_(cfg_, stats_),
        sessions_({cfg_, stats_, clock_, durable_, security_, budget_, holds_, router_, groups_, timers_}),
        router_(clock_, durable_, sessions_, groups_),
        groups_({cfg_, stats_, clock_, durable_, router_.tree(), sessions_}),
        delayed_({cfg_, clock_, timers_, durable_, router_}) {}
  BrokerParts(const BrokerParts&) = delete;
  BrokerParts& operator=(const BrokerParts&) = delete;

  // In the order they are built.
  Config cfg_;
  LoopTimers timers_;  // close() it, and run the loop, before this goes
  const Clock& clock_;
  BrokerStats stats_;
  Security security_;
  Durable durable_;
  AckHolds holds_;
  OutputBudget budget_;
  Sessions sessions_;
  Router router_;
  SharedGroups groups_;
  DelayedPublish delayed_;
};

}  // namespace petrel
