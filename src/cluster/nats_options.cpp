#include "src/cluster/nats_options.h"

#include <nats/nats.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "src/util/log.h"

namespace petrel::cluster {

std::string nodeName(const ClusterConfig& cfg) {
  if (!cfg.node.empty()) return cfg.node;
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || !buf[0]) return "petrel";
  return buf;
}

jsCtx* jetStreamOf(natsConnection* nc, int wait_ms, int& status) {
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = wait_ms;
  jsCtx* js = nullptr;
  status = natsConnection_JetStream(&js, nc, &o);
  return status == NATS_OK ? js : nullptr;
}

std::string natsErrorText(int status) {
  natsStatus detail = NATS_OK;
  const char* text = nats_GetLastError(&detail);
  return text && *text ? text : natsStatus_GetText(static_cast<natsStatus>(status));
}

natsOptions* natsOptionsFor(const ClusterConfig& cfg, const std::string& client_name, std::string& err) {
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  std::vector<const char*> urls;
  for (const auto& u : cfg.servers) urls.push_back(u.c_str());
  if (s == NATS_OK) s = natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetName(opts, client_name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK && cfg.user)
    s = natsOptions_SetUserInfo(opts, cfg.user->c_str(), cfg.password ? cfg.password->c_str() : nullptr);
  if (s == NATS_OK && cfg.token) s = natsOptions_SetToken(opts, cfg.token->c_str());
  const bool tls = !cfg.ca_file.empty() || !cfg.cert_file.empty();
  if (s == NATS_OK && tls) s = natsOptions_SetSecure(opts, true);
  if (s == NATS_OK && !cfg.ca_file.empty()) {
    s = natsOptions_LoadCATrustedCertificates(opts, cfg.ca_file.c_str());
    if (s != NATS_OK) err = "cluster.ca_file: " + cfg.ca_file + ": " + natsErrorText(s);
  }
  if (s == NATS_OK && !cfg.cert_file.empty()) {
    s = natsOptions_LoadCertificatesChain(opts, cfg.cert_file.c_str(), cfg.key_file.c_str());
    if (s != NATS_OK) err = "cluster.cert_file/key_file: " + natsErrorText(s);
  }
  if (s != NATS_OK) {
    if (err.empty()) err = "cluster: NATS options: " + natsErrorText(s);
    natsOptions_Destroy(opts);
    return nullptr;
  }
  return opts;
}

bool transientNatsError(int status) {
  switch (static_cast<natsStatus>(status)) {
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_IO_ERROR:
    case NATS_SLOW_CONSUMER:
    // The client's buffer for what is published while it reconnects is
    // full: it takes more once the link is back.
    case NATS_INSUFFICIENT_BUFFER:
      return true;
    default:
      return false;
  }
}

bool refusedForGood(int status, int js_error) {
  return static_cast<natsStatus>(status) == NATS_MAX_PAYLOAD ||
         static_cast<jsErrCode>(js_error) == JSStreamMessageExceedsMaximumErr;
}

int fetchBatchFor(natsSubscription* sub, int batch) {
  int msgs = 0;
  int bytes = 0;
  // One: what waits may hold status messages too (a late "no messages"),
  // which the fetch skips without counting, so a batch of their number
  // could still be left short by one and lowered below the count.
  if (natsSubscription_GetPending(sub, &msgs, &bytes) == NATS_OK && msgs > 0) return std::min(batch, 1);
  return batch;
}

bool takeWaiting(natsSubscription* sub, natsMsgList& list) {
  list = natsMsgList{};
  jsFetchRequest req;
  jsFetchRequest_Init(&req);
  req.Batch = 1;
  req.NoWait = true;
  req.Expires = 1;  // nanoseconds
  if (natsSubscription_FetchRequest(&list, sub, &req) == NATS_OK && list.Count > 0) return true;
  natsMsgList_Destroy(&list);
  return false;
}

void keepFetchToBatch(int& count, int batch, const char* kind, const std::string& name) {
  if (count <= batch) return;
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true))
    LOG_WARN("cluster: fetching from %s %s: the NATS client reported %d messages for a batch of %d; the rest "
             "come again", kind, name.c_str(), count, batch);
  count = batch;
}

void keepForGood(std::shared_ptr<void> p) {
  static auto* kept = new std::vector<std::shared_ptr<void>>();  // never freed, on purpose
  static auto* mu = new std::mutex();
  std::lock_guard<std::mutex> lock(*mu);
  kept->push_back(std::move(p));
}

}  // namespace petrel::cluster
