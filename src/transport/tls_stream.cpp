// src/transport/tls_stream.cpp — the TLS layer: ciphertext in through the
// session, plaintext up to the handler; plaintext down encrypted once per
// flush; close_notify while winding down; the alert before the close on a
// TLS error.
#include "src/transport/tls_stream.h"

#include "src/util/log.h"

namespace petrel {

TlsStream::TlsStream(Stream& lower, const tls::TlsContext& ctx) : LayerStream(lower), session_(ctx) {}

uint8_t* TlsStream::readBuffer(size_t& len, bool) {
  // Ciphertext never lands in the handler's decode space.
  return handler_->readBuffer(len, true);
}

void TlsStream::logHandshake() const {
  const bool cn = session_.hasPeerCommonName();
  LOG_DEBUG("TLS handshake with %s: %s%s%s", peer().c_str(), session_.describe().c_str(),
            !cn                   ? ""
            : session_.isClient() ? ", server certificate CN="
                                  : ", client certificate CN=",
            cn ? session_.peerCommonName().c_str() : "");
}

bool TlsStream::onStreamData(const uint8_t* data, size_t len) {
  // Ciphertext counts as a sign of life even when it completes no record.
  handler_->onStreamActivity();
  const bool was_done = session_.handshakeDone();
  const auto r = session_.feed(
      data, len, [this](const uint8_t* p, size_t n) { return handler_->onStreamData(p, n); });
  if (!was_done && session_.handshakeDone()) {
    logHandshake();
    if (session_.isClient()) handler_->onStreamConnected(0);
  }
  switch (r) {
    case tls::TlsSession::Result::Ok:
      if (session_.hasOutput()) handler_->onStreamOutput();
      return true;
    case tls::TlsSession::Result::Closed:
      // close_notify from the peer: the same as end of stream.
      handler_->onStreamEnd(StreamEnd::PeerClosed);
      return false;
    case tls::TlsSession::Result::Error:
      LOG_NOTICE("closing %s: TLS %s", peer().c_str(), session_.error().c_str());
      // The alert OpenSSL queued goes out before the socket closes.
      handler_->onStreamEnd(StreamEnd::Failed);
      return false;
  }
  return false;
}

void TlsStream::onStreamConnected(int status) {
  if (status != 0) return handler_->onStreamConnected(status);
  // Client side: the socket is up; the ClientHello goes first, and the
  // handler hears of the connection once the handshake is complete.
  if (session_.feed(nullptr, 0, [](const uint8_t*, size_t) { return true; }) !=
      tls::TlsSession::Result::Ok) {
    LOG_NOTICE("TLS to %s: %s", peer().c_str(), session_.error().c_str());
    return handler_->onStreamEnd(StreamEnd::Failed);
  }
  handler_->onStreamOutput();
}

Stream::Write TlsStream::write(std::string& data) {
  if (!data.empty()) {
    // Nothing is queued for a peer before its handshake completes except
    // on the way to closing, and that output cannot be sent anyway.
    if (session_.handshakeDone() && !session_.write(data.data(), data.size(), cipher_)) {
      LOG_DEBUG("TLS write to %s failed: %s", peer().c_str(), session_.error().c_str());
      data.clear();
      cipher_.clear();
      return Write::Failed;
    }
    data.clear();
  }
  if (winding_down_) session_.shutdown();  // close_notify after the last data (once)
  session_.drainOutput(cipher_);
  return sendCipher();
}

Stream::Write TlsStream::sendCipher() {
  const Write r = lower_.write(cipher_);
  if (cipher_.empty()) std::string().swap(cipher_);
  return r;
}

void TlsStream::windDown() {
  winding_down_ = true;
  lower_.windDown();
}

bool TlsStream::shutdown() {
  // Normally close_notify went out with the last write already (windDown);
  // a half-close without winding down sends it now.
  session_.shutdown();
  session_.drainOutput(cipher_);
  if (sendCipher() == Write::Failed) return false;
  return lower_.shutdown();
}

}  // namespace petrel
