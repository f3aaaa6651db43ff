// src/cluster/nats_options.h — the NATS client options of a `cluster:`
// section: its servers, credentials and TLS (for a node's link and for
// `petrel inspect --cluster`).
#pragma once

#include <memory>
#include <string>

#include "src/config/config.h"

struct __natsOptions;
struct __natsConnection;
struct __jsCtx;
struct __natsSubscription;
struct natsMsgList;

namespace petrel::cluster {

// New options (the caller destroys them), or null with `err` naming the key
// NATS refused (a TLS file that does not load).
__natsOptions* natsOptionsFor(const ClusterConfig& cfg, const std::string& client_name, std::string& err);

// This node's name: `cluster.node`, or the host name.
std::string nodeName(const ClusterConfig& cfg);

// A JetStream context on `nc` whose requests wait up to `wait_ms`; null
// on failure (the NATS status in `status`).
__jsCtx* jetStreamOf(__natsConnection* nc, int wait_ms, int& status);

// The client's last error, or the status's text.
std::string natsErrorText(int status);

// Keeps `p` alive until the process ends: what the NATS client's threads
// may still call back into after its owner is gone (they run until the
// connection is destroyed, not before the process ends).
void keepForGood(std::shared_ptr<void> p);

// The link or JetStream is away for now (reconnecting, no answer, no
// leader yet after a server died): what failed is tried again.
bool transientNatsError(int status);

// JetStream's answer to a publish refuses the message for good (larger
// than the stream or NATS takes): trying it again cannot help. Any other
// refusal (JetStream unavailable for now, a store that failed, a limit
// reached, no answer) may pass later, so the message is tried again and
// what waits for it keeps waiting.
bool refusedForGood(int status, int js_error);

// The batch to ask a fetch on `sub` for, at most `batch`. libnats 3.4's
// fetch first takes messages already waiting in the subscription (late
// answers to an earlier request, after a reconnect above all), then lowers
// the request's Batch by their number and reads until its count *equals*
// the lowered Batch: when more than half the batch was waiting, the count
// is past it already, and the fetch writes messages past the end of the
// list it allocated for Batch entries (a heap overflow: seen as a list of
// 437 for a batch lowered to 106, and heap corruption aborts). While
// anything waits, the batch is one: taken from the waiting messages alone,
// with no request and nothing lowered, or, when only status messages wait,
// asked of the server as usual (a count of 0 never passes a batch of 1).
int fetchBatchFor(__natsSubscription* sub, int batch);

// Takes into `list` one message that already waits in the pull
// subscription `sub`, skipping status messages (the ends of earlier
// fetches), and never asks JetStream for more: the fetch's deadline (1 ns,
// 0 ms to libnats) has passed before it would send its request. True when
// it took one. For what is left after a fetch gave up waiting (an answer
// that came late): a request sent then would be answered after the caller
// stopped reading, and what JetStream sent it would wait out the
// consumer's ack wait.
bool takeWaiting(__natsSubscription* sub, natsMsgList& list);

// A fetch's list longer than the batch asked for (`batch`, as it was
// before the call: libnats may lower it) is read only as far as the batch,
// so that only the list's own entries are read and destroyed; a message it
// did not keep was not acknowledged, so JetStream sends it again. Logged
// once per process, naming what was fetched (`kind` and `name`).
void keepFetchToBatch(int& count, int batch, const char* kind, const std::string& name);

}  // namespace petrel::cluster
