// src/transport/tls_stream.h — TLS as a layer of a stream stack, on any
// Stream below it (TCP today; the same code would run over anything that
// carries bytes).
//
// Ciphertext from below goes through a tls::TlsSession (memory BIOs: libuv
// keeps doing all socket I/O) and the plaintext up to the handler, decoded
// from the session's batch buffer. Output the owner hands down is encrypted
// once per flush, together with the records OpenSSL produces on its own
// (handshake, alerts, tickets), into one ciphertext buffer that is handed to
// the stream below and released once written, so an idle TLS connection
// holds no buffer of its own beyond the SSL object.
//
// Server side (an accepted connection) or client side (a bridge's outgoing
// connection), as the context says; a client-side owner writes only after
// onStreamConnected(0), which comes once the handshake is complete.
#pragma once

#include <string>

#include "src/transport/stream.h"
#include "tls/tls_session.h"

namespace petrel {

class TlsStream final : public LayerStream {
 public:
  // Takes over `lower`'s handler slot; `lower` must outlive this layer.
  TlsStream(Stream& lower, const tls::TlsContext& ctx);

  // Client side: the name the server's certificate must carry (also sent
  // as SNI unless it is an IP address). Before the connection is made.
  bool setServerName(const std::string& name) { return session_.setServerName(name); }

  Write write(std::string& data) override;
  size_t pendingBytes() const override { return cipher_.size() + lower_.pendingBytes(); }
  void windDown() override;
  bool shutdown() override;
  bool handshakeDone() const override { return session_.handshakeDone(); }
  tls::TlsSession* tlsSession() override { return &session_; }

 private:
  // From the stream below.
  uint8_t* readBuffer(size_t& len, bool transformed) override;
  bool onStreamData(const uint8_t* data, size_t len) override;
  void onStreamConnected(int status) override;
  void logHandshake() const;
  // Hands the ciphertext buffer down and lets go of its storage once empty.
  Write sendCipher();

  tls::TlsSession session_;
  std::string cipher_;  // ciphertext not yet taken by the stream below
  bool winding_down_ = false;
};

}  // namespace petrel
