// src/bridges/bridges.h — the bridges of the `bridges:` section (bridge.h is
// one of them): their sessions at start-up, the client side of their
// connections (CONNACK, SUBACK, PINGRESP), their state and counters in $SYS.
//
// Owns: the Bridge objects, their TLS client contexts, their timers.
// May call: Sessions (the out queue sessions, attaching a link, queue
// limits), Router (subscriptions of the out rules, $SYS messages), Durable
// (session records), LoopTimers, and the broker through Parts (a new
// connection, its timer). Sessions reads a Bridge's topic map when it sends
// on a bridge connection; the PUBLISH handler does for what comes in.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/decoder.h"
#include "src/bridges/bridge.h"
#include "src/config/config.h"

namespace petrel {

class Connection;
class Durable;
class LoopTimers;
class Router;
class Sessions;
struct BrokerStats;

class Bridges {
 public:
  struct Parts {
    const Config& cfg;
    Sessions& sessions;
    Router& router;
    Durable& durable;
    LoopTimers& timers;
    uv_loop_t* loop;
    // A new connection in the broker's list, not yet connected.
    std::function<Connection*()> new_connection;
    // Arms the connection's deadlines (the CONNACK timeout).
    std::function<void(Connection&)> watch;
  };
  explicit Bridges(const Parts& p);
  ~Bridges();
  Bridges(const Bridges&) = delete;
  Bridges& operator=(const Bridges&) = delete;

  // After the store is loaded: the out queue sessions and their
  // subscriptions (sessions of bridges no longer configured are ended), the
  // TLS contexts, the first connections. False with `err` on a TLS file
  // that does not load.
  bool start(std::string& err);
  // Shutdown: DISCONNECT on every link, no reconnects.
  void stop();

  // From the connection of a bridge (Connection::bridge).
  void onConnected(Connection& c, int status);
  // CONNACK, SUBACK, UNSUBACK, PINGRESP, DISCONNECT.
  void onPacket(Connection& c, const mqtt::Frame& f);
  void onLinkLost(Connection& c);

  // $SYS/broker/bridge/<name>/...: the counters (every mqtt.sys_interval).
  void publishSys();
  size_t size() const { return bridges_.size(); }
  const std::vector<std::unique_ptr<Bridge>>& all() const { return bridges_; }

 private:
  friend class Bridge;
  void publishStatus(const Bridge& b, const std::string& what, const std::string& value);

  Parts p_;
  std::vector<std::unique_ptr<Bridge>> bridges_;
};

}  // namespace petrel
