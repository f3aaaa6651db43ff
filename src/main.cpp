// petrel — an MQTT 3.1, 3.1.1 and 5.0 broker.
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "src/broker/broker.h"
#include "src/config/config.h"
#include "src/security/security.h"
#include "tls/tls_context.h"
#include "src/cluster/store_replica.h"
#include "src/tools/cluster_inspect.h"
#include "src/tools/inspect.h"
#include "src/util/log.h"
#include "src/util/service_notify.h"
#include "src/tools/passwd_command.h"

namespace {

void usage(FILE* f) {
  std::fprintf(f,
      "Usage: petrel [--config FILE] [--port N] [--check-config]\n"
      "       petrel inspect [--data DIR | --config FILE] [-v]\n"
      "       petrel inspect --cluster [--config FILE]\n"
      "       petrel passwd [-c | -D] [-b] FILE USER [PASSWORD]\n"
      "       petrel --help | --version\n"
      "\n"
      "  -c, --config FILE   configuration file (default: config.yaml if present)\n"
      "  -p, --port N        override the port of the first listener\n"
      "      --check-config  validate the configuration and exit (0 = valid)\n"
      "  -h, --help          this help\n"
      "  -v, --version       print the version\n"
      "\n"
      "petrel inspect prints the sessions, subscriptions, queue depths, retained\n"
      "count and size of a data store (the broker may be running); DIR defaults\n"
      "to persistence.dir of the configuration. With --cluster it asks the nodes\n"
      "of the configuration's cluster (over NATS) for their status, and prints\n"
      "them and the bucket of retained messages.\n");
}

struct Signals {
  uv_signal_t term, intr, hup, usr1;
  petrel::Broker* broker;
  std::string config_path;  // empty: the defaults, no file
};

void onSignal(uv_signal_t* h, int signum) {
  auto* s = static_cast<Signals*>(h->data);
  LOG_NOTICE("received %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
  uv_signal_stop(&s->term);
  uv_signal_stop(&s->intr);
  uv_signal_stop(&s->hup);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->term), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->intr), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->hup), nullptr);
  uv_signal_stop(&s->usr1);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->usr1), nullptr);
  petrel::notifyServiceManager("STOPPING=1");
  s->broker->shutdown();
}

// SIGUSR1: a report of the share groups (members, queue depth, in flight,
// redeliveries, drops) goes to the log.
void onReport(uv_signal_t* h, int) {
  auto* b = static_cast<Signals*>(h->data)->broker;
  const std::string r = b->groupReport();
  if (r.empty()) LOG_NOTICE("report: no share groups");
  // One log line per group (a line never holds a line break).
  size_t from = 0;
  while (from < r.size()) {
    size_t eol = r.find('\n', from);
    if (eol == std::string::npos) eol = r.size();
    if (eol > from) LOG_NOTICE("report: %s", r.substr(from, eol - from).c_str());
    from = eol + 1;
  }
}

// SIGHUP: the configuration file is read again and its `queues:` section
// applied; a file that does not load changes nothing. Other sections take
// effect at the next start.
void reloadQueues(const Signals& s) {
  if (s.config_path.empty()) return;  // started with the defaults: no queues
  petrel::Config next;
  std::string err;
  if (!petrel::loadConfig(s.config_path, next, err)) {
    LOG_ERROR("SIGHUP: configuration not reloaded, queues unchanged: %s", err.c_str());
    return;
  }
  LOG_NOTICE("SIGHUP: %s read again: applying its queues: section (other sections take effect at the next start)",
             s.config_path.c_str());
  s.broker->applyQueues(next.queues);
}

// SIGHUP: certificates, password file and ACL file are read again, and the
// configuration's queues.
void onHangup(uv_signal_t* h, int) {
  petrel::notifyServiceManager("RELOADING=1");
  auto* s = static_cast<Signals*>(h->data);
  s->broker->reloadSecurity("SIGHUP");
  reloadQueues(*s);
  petrel::notifyServiceManager("READY=1");
}

// What another node of the cluster took while this node was down
// (src/cluster/adoption.h) leaves its store before it loads: every
// session (record, subscriptions, queue, inbound QoS 2 ids), what share
// groups held here and the delayed publishes. Retained messages stay
// (they are the cluster's), and so do the bridges' out queues.
bool letGoOfAdopted(petrel::persistence::Store& store) {
  std::vector<std::string> owners;
  std::string err;
  if (!store.forEachSession([&](std::string_view id, const petrel::persistence::SessionRecord&) { owners.emplace_back(id); },
                            err)) {
    LOG_ERROR("persistence: reading the sessions: %s", err.c_str());
    return false;
  }
  store.forEachQueueOwner("\x01share/", [&](std::string_view owner) { owners.emplace_back(owner); });
  // Its bridges' out queues ("$bridge/<name>") were not taken: they stay.
  for (const std::string& o : owners)
    if (o.compare(0, 8, "$bridge/") != 0) store.batch().deleteSession(o);
  std::vector<petrel::persistence::DelayedKey> delayed;
  petrel::persistence::DelayedKey after{};
  for (;;) {
    const size_t n = store.readDelayed(after, 4096, [&](const petrel::persistence::DelayedKey& k) { delayed.push_back(k); });
    if (n == 0) break;
    after = delayed.back();
    if (n < 4096) break;
  }
  for (const auto& k : delayed) store.batch().deleteDelayed(k);
  store.submit();
  store.drain();
  size_t left = 0;
  store.forEachSession([&](std::string_view id, const petrel::persistence::SessionRecord&) {
    if (id.compare(0, 8, "$bridge/") != 0) ++left;
  }, err);
  return left == 0 && store.stats().delayed == 0;
}

// A cluster node started on an empty store (its disk lost, or a new
// machine under its name) reads back the replica of its store that the
// cluster's JetStream keeps (src/cluster/store_replica.h) before it loads.
// False: the replica could not be read (the node does not start).
bool restoreReplica(const petrel::Config& cfg, petrel::persistence::Store& store, petrel::Broker& broker) {
  const petrel::persistence::StoreStats st = store.stats();
  if (st.sessions || st.subscriptions || st.queued || st.messages || st.retained || st.inbound_qos2 || st.delayed)
    return true;
  bool checked = false;
  petrel::cluster::RestoreReport r;
  std::string err;
  if (!petrel::cluster::restoreAtStart(cfg.cluster, store, 5000, checked, r, err)) {
    LOG_ERROR("cluster: cannot read this node's store back from its replica in stream %s_replica: %s",
              cfg.cluster.name.c_str(), err.c_str());
    return false;
  }
  if (!checked) {
    LOG_WARN("cluster: this node's replica could not be read (%s): it starts on its empty store without "
             "reading a replica of it back", err.c_str());
    broker.guardEmptyReplica();
  } else if (r.found) {
    const petrel::persistence::StoreStats now = store.stats();
    LOG_NOTICE("cluster: this node's store read back from its replica in stream %s_replica: %llu sessions, "
               "%llu queued messages (a snapshot in %llu records and %llu batches after it%s)",
               cfg.cluster.name.c_str(), static_cast<unsigned long long>(now.sessions),
               static_cast<unsigned long long>(now.queued), static_cast<unsigned long long>(r.parts),
               static_cast<unsigned long long>(r.batches),
               r.hole ? "; the log stopped at a batch it never stored, which nothing acknowledged" : "");
  }
  return true;
}

// --check-config: loads what Broker::start would, on a loop of its own.
bool checkFiles(const petrel::Config& cfg, std::string& err) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  bool ok;
  {
    petrel::Security security(&loop, cfg);
    ok = security.start(err);
    security.stop();
  }
  for (const auto& b : cfg.bridges) {
    if (!ok || !b.tls) continue;
    std::string e;
    if (!petrel::tls::TlsContext::createClient(*b.tls, e)) {
      err = "bridge " + b.name + ": tls: " + e;
      ok = false;
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the closed handles
  uv_loop_close(&loop);
  return ok;
}

}  // namespace

int runInspect(int argc, char** argv) {
  std::string dir, config_path;
  bool verbose = false, cluster = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--data" || a == "-d") && i + 1 < argc) dir = argv[++i];
    else if (a == "--cluster") cluster = true;
    else if ((a == "--config" || a == "-c") && i + 1 < argc) config_path = argv[++i];
    else if (a == "-v" || a == "--verbose") verbose = true;
    else {
      std::fprintf(stderr, "petrel inspect: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (cluster) {
    if (!dir.empty()) {
      std::fprintf(stderr, "petrel inspect: --cluster reads no data store (--data)\n");
      return 2;
    }
    petrel::Config cfg;
    std::string err;
    if (config_path.empty()) {  // as the broker: config.yaml when present
      if (FILE* f = std::fopen("config.yaml", "r")) {
        std::fclose(f);
        config_path = "config.yaml";
      }
    }
    if (!config_path.empty() && !petrel::loadConfig(config_path, cfg, err)) {
      std::fprintf(stderr, "petrel: configuration error: %s\n", err.c_str());
      return 1;
    }
    return petrel::inspectCluster(cfg.cluster);
  }
  if (dir.empty()) {
    petrel::Config cfg;
    std::string err;
    if (!config_path.empty() && !petrel::loadConfig(config_path, cfg, err)) {
      std::fprintf(stderr, "petrel: configuration error: %s\n", err.c_str());
      return 1;
    }
    dir = cfg.data_dir;
  }
  return petrel::inspectStore(dir, verbose);
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "inspect") return runInspect(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "passwd") == 0) return petrel::passwdCommand(argc - 1, argv + 1);
  std::string config_path;
  bool check_only = false;
  int port_override = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "petrel: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "-v" || a == "--version") {
      std::printf("petrel %s\n", PETREL_VERSION);
      return 0;
    } else if (a == "-c" || a == "--config") {
      config_path = value("--config");
    } else if (a == "-p" || a == "--port") {
      const char* v = value("--port");
      char* end;
      long p = std::strtol(v, &end, 10);
      if (*end || p < 0 || p > 65535) {
        std::fprintf(stderr, "petrel: --port: '%s' is not a port number\n", v);
        return 2;
      }
      port_override = static_cast<int>(p);
    } else if (a == "--check-config") {
      check_only = true;
    } else {
      std::fprintf(stderr, "petrel: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }

  petrel::Config cfg;
  if (config_path.empty()) {
    if (FILE* f = std::fopen("config.yaml", "r")) {
      std::fclose(f);
      config_path = "config.yaml";
    }
  }
  if (!config_path.empty()) {
    std::string err;
    if (!petrel::loadConfig(config_path, cfg, err)) {
      std::fprintf(stderr, "petrel: configuration error: %s\n", err.c_str());
      return 1;
    }
  }
  if (port_override >= 0) cfg.listeners.at(0).port = static_cast<uint16_t>(port_override);
  petrel::setLogLevel(cfg.log_level);
  if (check_only) {
    // Everything the start would load: certificates, keys, CAs, CRLs and
    // cipher lists of listeners and bridges, the password and ACL files.
    std::string err;
    if (!checkFiles(cfg, err)) {
      std::fprintf(stderr, "petrel: configuration error: %s\n", err.c_str());
      return 1;
    }
    std::printf("%s: configuration is valid\n", config_path.empty() ? "(defaults)" : config_path.c_str());
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);

  uv_loop_t* loop = uv_default_loop();
  petrel::Broker broker(loop, cfg);
  std::string err;
  if (cfg.persistence) {
    petrel::persistence::StoreOptions so;
    so.dir = cfg.data_dir;
    so.map_size = cfg.max_store_mb << 20;
    so.sync = cfg.sync_fsync ? petrel::persistence::SyncMode::Fsync : petrel::persistence::SyncMode::Periodic;
    so.sync_interval_ms = cfg.sync_interval_ms;
    so.on_corrupt = cfg.on_corrupt_move_aside ? petrel::persistence::OnCorrupt::MoveAside
                                              : petrel::persistence::OnCorrupt::Fail;
    std::string notice;
    auto store = petrel::persistence::Store::open(so, err, &notice);
    if (!store) {
      LOG_ERROR("cannot open the persistent store: %s", err.c_str());
      LOG_ERROR("fix or remove it, or set persistence.on_corrupt: move_aside to start with an empty store");
      return 1;
    }
    if (!notice.empty()) {
      if (store && notice.find("moved it aside") == std::string::npos) LOG_NOTICE("persistence: %s", notice.c_str());
      else LOG_ERROR("persistence: %s", notice.c_str());
    }
    if (cfg.cluster.enabled && cfg.cluster.jetstream && cfg.cluster.store_replica) {
      bool checked = false;
      std::string by;
      petrel::persistence::Store& st = *store;
      if (!petrel::cluster::adoptedAtStart(cfg.cluster, 3000, [&] { return letGoOfAdopted(st); }, checked, by, err)) {
        LOG_ERROR("cluster: %s", err.c_str());
        return 1;
      }
      if (!checked)
        LOG_WARN("cluster: whether another node took this node's sessions while it was down could not be "
                 "read (%s): it serves those it has", err.c_str());
      else if (!by.empty())
        LOG_NOTICE("cluster: node %s took this node's sessions while it was down: its store let go of them",
                   by.c_str());
      if (!restoreReplica(cfg, *store, broker)) return 1;
    }
    if (!broker.attachStore(std::move(store), err)) {
      LOG_ERROR("cannot load the persistent store: %s", err.c_str());
      return 1;
    }
  }
  if (!broker.start(err)) {
    LOG_ERROR("cannot start: %s", err.c_str());
    return 1;
  }
  Signals sig;
  sig.broker = &broker;
  sig.config_path = config_path;
  uv_signal_init(loop, &sig.term);
  uv_signal_init(loop, &sig.intr);
  uv_signal_init(loop, &sig.hup);
  uv_signal_init(loop, &sig.usr1);
  sig.term.data = sig.intr.data = sig.hup.data = sig.usr1.data = &sig;
  uv_signal_start(&sig.usr1, onReport, SIGUSR1);
  uv_signal_start(&sig.term, onSignal, SIGTERM);
  uv_signal_start(&sig.intr, onSignal, SIGINT);
  uv_signal_start(&sig.hup, onHangup, SIGHUP);
  LOG_NOTICE("petrel %s started", PETREL_VERSION);
  // Listeners are bound and the store is loaded: a Type=notify service is
  // up (systemd starts what depends on it only now).
  if (!petrel::notifyServiceManager("READY=1")) LOG_WARN("could not notify the service manager ($NOTIFY_SOCKET)");
  uv_run(loop, UV_RUN_DEFAULT);
  broker.finish();
  LOG_NOTICE("petrel stopped");
  uv_loop_close(loop);
  return 0;
}
