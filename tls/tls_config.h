// tls/tls_config.h — the TLS settings of one listener, as read from the
// `tls:` mapping of a listener in config.yaml. Plain data, no OpenSSL types,
// so src/config.h can hold it.
#pragma once

#include <cstdint>
#include <string>

namespace petrel::tls {

struct TlsConfig {
  std::string cert_file;   // PEM: the server certificate, then its chain
  std::string key_file;    // PEM: the private key (unencrypted)
  std::string ca_file;     // PEM bundle of CAs that client certificates chain to
  std::string ca_dir;      // directory of hashed CA files (c_rehash layout)
  std::string crl_file;    // PEM CRLs checked against client certificates
  bool require_certificate = false;
  bool use_identity_as_username = false;
  std::string min_version = "1.2";  // "1.2" or "1.3"
  std::string ciphers;       // TLS 1.2 cipher list (OpenSSL syntax); empty = default
  std::string ciphersuites;  // TLS 1.3 suites; empty = default
  uint32_t handshake_timeout_ms = 10000;
};

}  // namespace petrel::tls
