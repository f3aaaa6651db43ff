// src/security/security.h — the per-listener security settings the broker keeps
// next to each listening socket: whether anonymous clients are accepted,
// whether the certificate CN is the user name, and the TLS context.
// Authentication, ACL checks and reloading are Broker methods in
// security.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tls/tls_context.h"

namespace petrel {

struct ListenerSecurity {
  std::string name;  // "address:port", for logs
  bool allow_anonymous = true;
  bool use_identity_as_username = false;
  uint32_t handshake_timeout_ms = 0;
  std::unique_ptr<tls::TlsContext> tls;  // null on a plain listener
};

}  // namespace petrel
