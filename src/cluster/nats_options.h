// src/cluster/nats_options.h — the NATS client options of a `cluster:`
// section: its servers, credentials and TLS (for a node's link and for
// `petrel inspect --cluster`).
#pragma once

#include <string>

#include "src/config/config.h"

struct __natsOptions;

namespace petrel::cluster {

// New options (the caller destroys them), or null with `err` naming the key
// NATS refused (a TLS file that does not load).
__natsOptions* natsOptionsFor(const ClusterConfig& cfg, const std::string& client_name, std::string& err);

// The client's last error, or the status's text.
std::string natsErrorText(int status);

// The link or JetStream is away for now (reconnecting, no answer, no
// leader yet after a server died): what failed is tried again.
bool transientNatsError(int status);

}  // namespace petrel::cluster
