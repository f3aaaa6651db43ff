// src/bridges/bridge.h — one bridge: a client connection from this broker to
// a remote one, and its out queue.
//
// What goes out is owed to a local session, "$bridge/<name>", subscribed to
// the local side of every `out` rule (No Local, Retain As Published). It is
// a durable session like any other: its queue is in the store (a RAM window
// over it), survives the link being down and restarts, and an entry leaves
// it only when the remote broker has acknowledged it. While the link is up
// the session is attached to the bridge's connection, so delivery, the
// in-flight window, resends and acknowledgements are the sessions' own
// code; only the topic is rewritten on the way out (sendPublish).
//
// What comes in arrives on the same connection as PUBLISH from the remote
// (the `in` rules, subscribed on the remote with No Local), is rewritten to
// the local topic and handled like a client's PUBLISH: the acknowledgement
// to the remote waits until it is stored where owed.
//
// The link: connect (address list in turn, host names resolved), TLS,
// CONNECT, CONNACK, SUBSCRIBE, PINGREQ every keep alive; any failure closes
// the connection, and a reconnect follows after an exponential backoff with
// jitter.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "mqtt/decoder.h"
#include "src/bridges/topic_map.h"
#include "src/config/config.h"
#include "src/timers/timer_queue.h"

namespace petrel {

class Bridges;
class Connection;
class Session;
namespace tls {
class TlsContext;
}

class Bridge {
 public:
  Bridge(Bridges& owner, const BridgeConfig& cfg);
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // The user property of a Petrel bridge's MQTT 5 CONNECT: the remote
  // marks what it receives over that connection as bridged.
  static constexpr const char* kUserProperty = "petrel-bridge";

  const BridgeConfig& config() const { return cfg_; }
  const std::string& name() const { return cfg_.name; }
  // The local session holding what goes out: "$bridge/<name>".
  static std::string sessionId(const std::string& name) { return "$bridge/" + name; }
  const TopicMap& topics() const { return map_; }
  bool up() const { return up_; }
  // The out queue session (null before Bridges::start).
  const Session* session() const { return session_; }

  struct Counters {
    uint64_t forwarded = 0;   // PUBLISH sent to the remote (first sends)
    uint64_t received = 0;    // PUBLISH received from the remote
    uint64_t reconnects = 0;  // connection attempts after the first
  };
  Counters counters;

 private:
  friend class Bridges;
  struct Resolve;

  // Connects to the next address.
  void connect();
  void open(const sockaddr* addr);
  void retryLater(const char* why);
  void connected(Connection& c, int status);
  void onConnack(Connection& c, const mqtt::Frame& f);
  void subscribeRemote(Connection& c);
  void linkLost(Connection& c);
  void stop();
  void setUp(bool up);
  std::string addressText() const;
  static void onRetry(Timer& t);
  static void onPing(Timer& t);
  static void onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res);

  Bridges& owner_;
  const BridgeConfig& cfg_;
  TopicMap map_;
  std::string client_id_;
  std::unique_ptr<tls::TlsContext> tls_;
  Session* session_ = nullptr;
  Connection* conn_ = nullptr;  // the link, from connect to its loss
  Resolve* resolving_ = nullptr;
  Timer retry_;
  Timer ping_;
  size_t address_ = 0;     // the address tried (or in use)
  uint32_t failures_ = 0;  // since the last successful CONNACK
  uint16_t keepalive_ = 0;  // seconds, as the remote accepted it
  bool up_ = false;
  bool started_ = false;   // a first attempt was made
  bool stopped_ = false;
  bool private_refused_ = false;  // the remote refused the bridge bit
};

}  // namespace petrel
