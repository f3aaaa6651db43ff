// tls/tls_context.h — the TLS context of one listener (server side: the
// certificate chain, private key, trusted CAs, CRL, protocol floor and cipher
// choices, built from a TlsConfig), or of outgoing connections (client side,
// for bridges: the CAs that verify the server, an optional client
// certificate, the same protocol and cipher choices).
//
// Reloading builds a complete new OpenSSL context from the files and swaps it
// in only if every step succeeded; a bad file leaves the old context in use.
// Sessions hold a reference to the context they were created from (OpenSSL
// counts SSL -> SSL_CTX references), so connections that are already open keep
// working on the old certificate while new ones get the new one.
//
// This header is OpenSSL-free: src/ includes it without seeing OpenSSL types.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tls/tls_config.h"

struct ssl_ctx_st;

namespace petrel::tls {

class TlsContext {
 public:
  // Builds the context; on failure returns nullptr and says why in `error`.
  static std::unique_ptr<TlsContext> create(const TlsConfig& cfg, std::string& error);
  // Client side: the server's certificate is always verified, against
  // ca_file / ca_dir or else the system's CAs; cert_file and key_file, if
  // set, are the client certificate. require_certificate does not apply.
  static std::unique_ptr<TlsContext> createClient(const TlsConfig& cfg, std::string& error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Reads the files again. On success new sessions use the new context; on
  // failure the old one stays and `error` says why.
  bool reload(std::string& error);

  // A cheap periodic check (stat of each file): true once a file changed
  // since the last (re)load attempt and has then stayed the same for one
  // more check, so a certificate and key being rewritten one after the other
  // (a Let's Encrypt renewal) are picked up together, not half-way.
  bool filesChanged();

  const TlsConfig& config() const { return cfg_; }
  bool isClient() const { return client_; }
  // The current OpenSSL context, for TlsSession.
  ssl_ctx_st* native() const { return ctx_.get(); }
  // Serial number of the current server certificate, as hex (for logs).
  const std::string& certSerial() const { return serial_; }
  // A warning when the CRL (crl_file) has passed its nextUpdate (OpenSSL
  // then refuses every client certificate) or will within
  // `warn_within_s` seconds of `now_s` (Unix time); empty otherwise.
  std::string crlWarning(int64_t now_s, int64_t warn_within_s) const;

 private:
  TlsContext(const TlsConfig& cfg, bool client) : cfg_(cfg), client_(client) {}
  static std::unique_ptr<TlsContext> make(const TlsConfig& cfg, bool client, std::string& error);
  std::string stamp() const;

  struct CtxFree {
    void operator()(ssl_ctx_st* c) const;
  };
  TlsConfig cfg_;
  bool client_;
  std::unique_ptr<ssl_ctx_st, CtxFree> ctx_;
  std::string serial_;
  std::string loaded_stamp_;  // file stamps when the last load was attempted
  std::string seen_stamp_;    // file stamps at the previous filesChanged()
};

// Every error OpenSSL has queued on this thread, joined by "; " (and the
// queue cleared).
std::string drainOpenSslErrors();

}  // namespace petrel::tls
