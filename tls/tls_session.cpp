// tls/tls_session.cpp — one SSL object (server or client side) between two
// memory BIOs.
#include "tls/tls_session.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>

#include "tls/tls_context.h"

namespace petrel::tls {

namespace {

// Ciphertext is handed to OpenSSL in slices of about one record, with the
// plaintext drained in between, so the read BIO never grows to the size of
// a whole socket read (it keeps its allocation for the connection's life).
constexpr size_t kFeedSlice = 17 * 1024;
// Plaintext is decrypted into a per-thread buffer and passed on in batches
// of up to this size, so the MQTT decoder sees many packets at once.
constexpr size_t kPlainBatch = 64 * 1024;
// Large writes are encrypted in slices so the write BIO stays small.
constexpr size_t kWriteSlice = 64 * 1024;

BIO* asBio(void* p) { return static_cast<BIO*>(p); }

}  // namespace

void TlsSession::SslFree::operator()(ssl_st* s) const { SSL_free(s); }

TlsSession::TlsSession(const TlsContext& ctx) {
  ssl_.reset(SSL_new(ctx.native()));
  if (!ssl_) {
    error_ = "SSL_new failed: " + drainOpenSslErrors();
    return;
  }
  BIO* r = BIO_new(BIO_s_mem());
  BIO* w = BIO_new(BIO_s_mem());
  if (!r || !w) {
    BIO_free(r);
    BIO_free(w);
    ssl_.reset();
    error_ = "cannot allocate memory BIOs";
    return;
  }
  // An empty read BIO means "wait for more", not end of stream.
  BIO_set_mem_eof_return(r, -1);
  SSL_set_bio(ssl_.get(), r, w);  // the SSL owns both from here
  rbio_ = r;
  wbio_ = w;
  client_ = ctx.isClient();
  if (client_)
    SSL_set_connect_state(ssl_.get());
  else
    SSL_set_accept_state(ssl_.get());
}

bool TlsSession::setServerName(const std::string& name) {
  if (!ssl_ || !client_ || name.empty()) return false;
  unsigned char addr[16];
  const bool ip = inet_pton(AF_INET, name.c_str(), addr) == 1 ||
                  inet_pton(AF_INET6, name.c_str(), addr) == 1;
  // RFC 6066 §3: SNI carries host names only, never address literals.
  if (ip) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), name.c_str()) == 1;
  return SSL_set_tlsext_host_name(ssl_.get(), name.c_str()) == 1 &&
         SSL_set1_host(ssl_.get(), name.c_str()) == 1;
}

TlsSession::~TlsSession() = default;

void TlsSession::setError(int ssl_error, const char* during) {
  std::string why = drainOpenSslErrors();
  if (ssl_) {
    const long v = SSL_get_verify_result(ssl_.get());
    if (v != X509_V_OK) why += std::string(why.empty() ? "" : "; ") + X509_verify_cert_error_string(v);
  }
  if (why.empty()) {
    why = ssl_error == SSL_ERROR_SYSCALL ? "unexpected end of stream"
                                         : "error " + std::to_string(ssl_error);
  }
  error_ = std::string(during) + ": " + why;
}

void TlsSession::onHandshakeDone() {
  handshake_done_ = true;
  X509* cert = SSL_get0_peer_certificate(ssl_.get());
  if (!cert) return;
  X509_NAME* name = X509_get_subject_name(cert);
  const int i = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
  if (i < 0) return;
  const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  const int n = s ? ASN1_STRING_to_UTF8(&utf8, s) : -1;
  if (n <= 0) return;
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  // A CN with an embedded NUL could impersonate a shorter name.
  if (cn.find('\0') != std::string::npos) return;
  peer_cn_ = std::move(cn);
  has_cn_ = true;
}

TlsSession::Result TlsSession::feed(const uint8_t* data, size_t len, const PlainSink& sink) {
  if (!ssl_) return Result::Error;
  thread_local std::unique_ptr<uint8_t[]> plain(new uint8_t[kPlainBatch]);
  ERR_clear_error();
  size_t pos = 0;
  do {
    const size_t n = std::min(kFeedSlice, len - pos);
    if (n > 0 && BIO_write(asBio(rbio_), data + pos, static_cast<int>(n)) != static_cast<int>(n)) {
      error_ = "cannot buffer TLS input";
      return Result::Error;
    }
    pos += n;
    if (!handshake_done_) {
      const int r = SSL_do_handshake(ssl_.get());
      if (r != 1) {
        const int e = SSL_get_error(ssl_.get(), r);
        if (e == SSL_ERROR_WANT_READ) continue;
        setError(e, "handshake");
        return Result::Error;
      }
      onHandshakeDone();
    }
    // Decrypt everything buffered, passing plaintext on in batches.
    for (;;) {
      size_t used = 0;
      int e = SSL_ERROR_NONE;
      while (used < kPlainBatch) {
        size_t got = 0;
        if (SSL_read_ex(ssl_.get(), plain.get() + used, kPlainBatch - used, &got) == 1) {
          used += got;
          continue;
        }
        e = SSL_get_error(ssl_.get(), 0);
        break;
      }
      if (used > 0 && !sink(plain.get(), used)) return Result::Ok;
      if (e == SSL_ERROR_NONE) continue;  // the batch filled up: keep reading
      if (e == SSL_ERROR_WANT_READ) break;
      if (e == SSL_ERROR_ZERO_RETURN) return Result::Closed;
      setError(e, "read");
      return Result::Error;
    }
  } while (pos < len);
  return Result::Ok;
}

bool TlsSession::write(const char* data, size_t len, std::string& out) {
  if (!ssl_ || !handshake_done_) return false;
  ERR_clear_error();
  size_t pos = 0;
  while (pos < len) {
    const size_t n = std::min(kWriteSlice, len - pos);
    size_t written = 0;
    if (SSL_write_ex(ssl_.get(), data + pos, n, &written) != 1) {
      setError(SSL_get_error(ssl_.get(), 0), "write");
      return false;
    }
    pos += written;
    drainOutput(out);
  }
  drainOutput(out);
  return true;
}

void TlsSession::drainOutput(std::string& out) {
  if (!wbio_) return;
  const size_t pending = BIO_ctrl_pending(asBio(wbio_));
  if (pending == 0) return;
  const size_t old = out.size();
  out.resize(old + pending);
  const int got = BIO_read(asBio(wbio_), out.data() + old, static_cast<int>(pending));
  out.resize(old + (got > 0 ? static_cast<size_t>(got) : 0));
}

bool TlsSession::hasOutput() const { return wbio_ && BIO_ctrl_pending(asBio(wbio_)) > 0; }

void TlsSession::shutdown() {
  if (!ssl_ || shutdown_sent_ || !handshake_done_) return;
  shutdown_sent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // queues close_notify; the peer's is not awaited
  ERR_clear_error();
}

std::string TlsSession::describe() const {
  if (!ssl_ || !handshake_done_) return "no handshake";
  return std::string(SSL_get_version(ssl_.get())) + " " + SSL_get_cipher_name(ssl_.get());
}

}  // namespace petrel::tls
