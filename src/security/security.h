// src/security/security.h — who may connect and what they may do: the TLS
// context and anonymous-access rule of each listener, authentication at
// CONNECT (password file, certificate identity), the ACL, and reloading all
// of it on SIGHUP or when certificate files change.
//
// Error policy: a bad file at start-up stops the broker with a message; a
// bad file at reload is logged and the previous version stays in force, so
// a typo never locks every client out or opens the broker up.
//
// May call: tls/, the file parsers here, libuv (one timer). Knows nothing of
// sessions or routing: the ACL is asked with a user name and client id.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <uv.h>

#include <optional>
#include <string_view>
#include <vector>

#include "mqtt/packets.h"
#include "src/config/config.h"
#include "src/security/acl.h"
#include "src/security/password_file.h"
#include "tls/tls_context.h"

namespace petrel {

struct ListenerSecurity {
  std::string name;  // "address:port", for logs
  bool allow_anonymous = true;
  bool use_identity_as_username = false;
  uint32_t handshake_timeout_ms = 0;
  std::unique_ptr<tls::TlsContext> tls;  // null on a plain listener
  // The WebSocket settings (in the configuration) of a ws/wss listener;
  // null on an MQTT one.
  const WebSocketConfig* websocket = nullptr;
};

class Security {
 public:
  Security(uv_loop_t* loop, const Config& cfg) : loop_(loop), cfg_(cfg) {}
  ~Security();
  Security(const Security&) = delete;
  Security& operator=(const Security&) = delete;

  // Loads the password and ACL files and the listeners' TLS contexts, and
  // starts watching certificate files. On failure `err` says why.
  bool start(std::string& err);
  void stop();
  // Reads everything again (SIGHUP); what fails keeps its old version.
  void reload(const char* why);

  // The settings of listener `i` (cfg.listeners order), or null.
  const ListenerSecurity* listener(size_t i) const {
    return i < listeners_.size() ? listeners_[i].get() : nullptr;
  }
  // Authentication at CONNECT: the user name the client is known by, or the
  // refusal reason with `why` for the log. `peer_cn` is the verified
  // certificate CN of a TLS client, if any.
  // A password check costs a hash (up to milliseconds): the broker runs it
  // off the loop (passwordFileFor, then PasswordFile::check on a worker
  // thread) and passes its result as `checked`; without one, authenticate
  // checks the password itself.
  mqtt::Reason authenticate(const ListenerSecurity* ls, const std::optional<std::string>& peer_cn,
                            const mqtt::Connect& p, std::optional<std::string>& username,
                            std::string& why, const PasswordFile::Result* checked = nullptr) const;
  // The password file this CONNECT's password must be checked against
  // (shared: a reload may replace it while a check runs); null when its
  // authentication costs no hash.
  std::shared_ptr<const PasswordFile> passwordFileFor(const ListenerSecurity* ls, const mqtt::Connect& p) const {
    if ((ls && ls->use_identity_as_username) || !p.username) return nullptr;
    return passwords_;
  }

  // A user of auth.password_file with its password (the HTTP endpoint's
  // basic authentication); false when there is no password file.
  bool checkPassword(std::string_view user, std::string_view password) const {
    return passwords_ && passwords_->check(user, password) == PasswordFile::Result::Ok;
  }

  // ACL checks; everything is allowed when no acl_file is configured.
  bool mayPublish(const std::optional<std::string>& user, const std::string& client_id,
                  std::string_view topic) const {
    return !acl_ || acl_->allows(user, client_id, topic, Acl::kWrite);
  }
  bool mayReceive(const std::optional<std::string>& user, const std::string& client_id,
                  std::string_view topic) const {
    return !acl_ || acl_->allows(user, client_id, topic, Acl::kRead);
  }
  bool maySubscribe(const std::optional<std::string>& user, const std::string& client_id,
                    std::string_view filter) const {
    return !acl_ || acl_->allowsSubscribe(user, client_id, filter);
  }

 private:
  static void onTlsWatch(uv_timer_t* t);

  uv_loop_t* loop_;
  const Config& cfg_;
  std::vector<std::unique_ptr<ListenerSecurity>> listeners_;  // cfg_.listeners order
  std::shared_ptr<const PasswordFile> passwords_;  // null: no password_file
  std::unique_ptr<Acl> acl_;                 // null: no acl_file
  uv_timer_t tls_watch_timer_;
  bool tls_watch_started_ = false;
  uint64_t watches_ = 0;  // TLS watch ticks, for the daily CRL check
};

}  // namespace petrel
