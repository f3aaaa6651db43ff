// tls/tls_session.h — one TLS connection, server side (accepted) or client
// side (outgoing, for bridges) as its context says, run over two OpenSSL
// memory BIOs so that libuv keeps doing all socket I/O:
//
//   socket bytes --feed()--> [read BIO] --SSL--> plaintext sink (the MQTT decoder)
//   MQTT output  --write()-> SSL --> [write BIO] --> appended to a std::string --> uv_write
//
// Records may arrive split anywhere; whatever OpenSSL answers on its own
// (handshake messages, alerts, TLS 1.3 key updates and tickets) comes out of
// drainOutput(). Renegotiation is refused by the context.
//
// OpenSSL-free header: the SSL object is only forward-declared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

struct ssl_st;

namespace petrel::tls {

class TlsContext;

class TlsSession {
 public:
  enum class Result {
    Ok,      // all input consumed (or the sink asked to stop)
    Closed,  // the peer sent close_notify
    Error,   // fatal: error() says why; drainOutput() may hold an alert
  };
  // Receives decrypted bytes; the pointer is valid during the call only.
  // Returning false stops decryption for this feed() call.
  using PlainSink = std::function<bool(const uint8_t* data, size_t len)>;

  explicit TlsSession(const TlsContext& ctx);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Client side: the name the server's certificate must carry -- a DNS name
  // (also sent as SNI) or an IP address. Before the first feed(). False if
  // OpenSSL refused it.
  bool setServerName(const std::string& name);
  bool isClient() const { return client_; }

  // Ciphertext from the peer: drives the handshake, then decrypts. A client
  // starts its handshake with an empty feed(), then sends drainOutput().
  Result feed(const uint8_t* data, size_t len, const PlainSink& sink);
  // Encrypts `len` bytes (after the handshake) and appends the records to
  // `out`, together with anything else pending. False on a fatal error.
  bool write(const char* data, size_t len, std::string& out);
  // Appends ciphertext OpenSSL produced on its own to `out`.
  void drainOutput(std::string& out);
  bool hasOutput() const;
  // Queues a close_notify alert (once); fetch it with drainOutput().
  void shutdown();

  bool handshakeDone() const { return handshake_done_; }
  // The peer certificate's subject CN, when it presented one (verified when
  // the context requires certificates; a client always verifies). An empty
  // CN or one with an embedded NUL is reported as absent.
  bool hasPeerCommonName() const { return has_cn_; }
  const std::string& peerCommonName() const { return peer_cn_; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384" after the handshake.
  std::string describe() const;
  const std::string& error() const { return error_; }

 private:
  void onHandshakeDone();
  void setError(int ssl_error, const char* during);

  struct SslFree {
    void operator()(ssl_st* s) const;
  };
  std::unique_ptr<ssl_st, SslFree> ssl_;
  void* rbio_ = nullptr;  // owned by ssl_
  void* wbio_ = nullptr;  // owned by ssl_
  bool handshake_done_ = false;
  bool has_cn_ = false;
  bool shutdown_sent_ = false;
  bool client_ = false;
  std::string peer_cn_;
  std::string error_;
};

}  // namespace petrel::tls
