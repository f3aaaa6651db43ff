// src/tools/cluster_inspect.h — `petrel inspect --cluster`: the nodes of a
// cluster as they describe themselves, and its bucket of retained
// messages, asked over NATS with the `cluster:` section of a configuration
// (read-only; the nodes keep running).
#pragma once

#include "src/config/config.h"

namespace petrel {

// Prints the report to stdout; returns the process exit status (1: NATS
// did not answer).
int inspectCluster(const ClusterConfig& cfg);

}  // namespace petrel
