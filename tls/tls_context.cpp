// tls/tls_context.cpp — building an SSL_CTX from a TlsConfig. Every
// OpenSSL object is owned by a unique_ptr with its free function; the
// context is handed out only once it is complete.
#include "tls/tls_context.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>

#include <cstring>
#include <string_view>

namespace petrel::tls {

namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using CtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX, SSL_CTX_free>>;

// ALPN (RFC 7301): MQTT over TLS registers the protocol id "mqtt". A client
// that offers other protocols only still connects, without ALPN.
int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static constexpr std::string_view kMqtt = "mqtt";
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int n = in[i];
    if (i + 1 + n > inlen) break;
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), n) == kMqtt) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(n);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// A key file with a passphrase cannot be used unattended; without this
// callback OpenSSL would prompt on the terminal.
int noPassphrase(char*, int, int, void*) { return 0; }

std::string fail(const std::string& what, const std::string& file) {
  std::string msg = what;
  if (!file.empty()) msg += " '" + file + "'";
  const std::string ssl = drainOpenSslErrors();
  if (!ssl.empty()) msg += ": " + ssl;
  return msg;
}

std::string serialOf(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (!cert) return {};
  const ASN1_INTEGER* s = X509_get0_serialNumber(cert);
  std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>> bn(ASN1_INTEGER_to_BN(s, nullptr));
  if (!bn) return {};
  char* hex = BN_bn2hex(bn.get());
  if (!hex) return {};
  std::string out(hex);
  OPENSSL_free(hex);
  return out;
}

// Builds a complete context (server or client side) or returns nullptr
// with `error` set.
CtxPtr build(const TlsConfig& cfg, bool client, std::string& error) {
  ERR_clear_error();
  CtxPtr ctx(SSL_CTX_new(client ? TLS_client_method() : TLS_server_method()));
  if (!ctx) {
    error = fail("cannot create a TLS context", "");
    return nullptr;
  }
  // TLS 1.0 and 1.1 are deprecated (RFC 8996); the config accepts only
  // 1.2 and 1.3 as the floor.
  const int floor = cfg.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (cfg.min_version != "1.2" && cfg.min_version != "1.3") {
    error = "min_version '" + cfg.min_version + "' is not 1.2 or 1.3";
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), floor);
  // Renegotiation is refused: a client-initiated renegotiation is a known
  // CPU-exhaustion vector and MQTT has no use for it.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                     (client ? 0 : SSL_OP_CIPHER_SERVER_PREFERENCE));
  // Idle connections give their record buffers back.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx.get(), noPassphrase);
  if (!client) {
    // Needed for session resumption when client certificates are verified.
    static const unsigned char kSidCtx[] = "petrel";
    SSL_CTX_set_session_id_context(ctx.get(), kSidCtx, sizeof kSidCtx - 1);
    SSL_CTX_set_alpn_select_cb(ctx.get(), selectAlpn, nullptr);
  }

  if (!cfg.ciphers.empty() && SSL_CTX_set_cipher_list(ctx.get(), cfg.ciphers.c_str()) != 1) {
    error = fail("ciphers: no usable cipher in '" + cfg.ciphers + "'", "");
    return nullptr;
  }
  if (!cfg.ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(ctx.get(), cfg.ciphersuites.c_str()) != 1) {
    error = fail("ciphersuites: no usable suite in '" + cfg.ciphersuites + "'", "");
    return nullptr;
  }

  // A server needs its certificate; a client may present one.
  const bool have_cert = !cfg.cert_file.empty() || !cfg.key_file.empty();
  if ((!client || have_cert) && (cfg.cert_file.empty() || cfg.key_file.empty())) {
    error = client ? "cert_file and key_file go together" : "cert_file and key_file are required";
    return nullptr;
  }
  if (have_cert && SSL_CTX_use_certificate_chain_file(ctx.get(), cfg.cert_file.c_str()) != 1) {
    error = fail("cannot load the certificate chain", cfg.cert_file);
    return nullptr;
  }
  if (have_cert &&
      SSL_CTX_use_PrivateKey_file(ctx.get(), cfg.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    error = fail("cannot load the private key", cfg.key_file);
    // OpenSSL checks the key against the certificate as it loads it.
    if (error.find("key values mismatch") != std::string::npos)
      error = "key_file " + cfg.key_file + " does not match cert_file " + cfg.cert_file +
              " (a key of another certificate)";
    return nullptr;
  }
  if (have_cert && SSL_CTX_check_private_key(ctx.get()) != 1) {
    error = fail("key_file " + cfg.key_file + " does not match cert_file " + cfg.cert_file, "");
    return nullptr;
  }

  const bool have_ca = !cfg.ca_file.empty() || !cfg.ca_dir.empty();
  if (have_ca) {
    if (SSL_CTX_load_verify_locations(ctx.get(), cfg.ca_file.empty() ? nullptr : cfg.ca_file.c_str(),
                                      cfg.ca_dir.empty() ? nullptr : cfg.ca_dir.c_str()) != 1) {
      error = fail("cannot load the CA certificates", cfg.ca_file.empty() ? cfg.ca_dir : cfg.ca_file);
      return nullptr;
    }
    if (!client && !cfg.ca_file.empty()) {
      // Tell clients which CAs are accepted, so they pick the right cert.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.ca_file.c_str()))
        SSL_CTX_set_client_CA_list(ctx.get(), names);
      ERR_clear_error();
    }
  }
  if (client) {
    // A client always checks the server: against the configured CAs, or
    // else the system's. The name is checked per session (setServerName).
    if (!have_ca && SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      error = fail("cannot load the system's CA certificates", "");
      return nullptr;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else if (cfg.require_certificate) {
    if (!have_ca) {
      error = "require_certificate needs ca_file or ca_dir";
      return nullptr;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!cfg.crl_file.empty()) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lookup || X509_load_crl_file(lookup, cfg.crl_file.c_str(), X509_FILETYPE_PEM) <= 0) {
      error = fail("cannot load the CRL", cfg.crl_file);
      return nullptr;
    }
    // The CRL of the peer certificate's issuer is checked (not the whole
    // chain: intermediate CAs rarely publish CRLs to the broker).
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  ERR_clear_error();
  return ctx;
}

void appendStamp(std::string& out, const std::string& path) {
  if (path.empty()) return;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    out += path + ":missing;";
    return;
  }
  out += path + ":" + std::to_string(st.st_dev) + "," + std::to_string(st.st_ino) + "," +
         std::to_string(st.st_size) + "," + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + "," + std::to_string(st.st_ctim.tv_sec) + "." +
         std::to_string(st.st_ctim.tv_nsec) + ";";
}

}  // namespace

std::string drainOpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    // "error:0A000086:SSL routines::certificate verify failed" -> keep the
    // readable part after the last colon pair.
    const char* p = std::strstr(buf, "::");
    out += p ? p + 2 : buf;
  }
  return out;
}

void TlsContext::CtxFree::operator()(ssl_ctx_st* c) const { SSL_CTX_free(c); }

TlsContext::~TlsContext() = default;

std::unique_ptr<TlsContext> TlsContext::make(const TlsConfig& cfg, bool client,
                                             std::string& error) {
  std::unique_ptr<TlsContext> t(new TlsContext(cfg, client));
  if (!t->reload(error)) return nullptr;
  t->seen_stamp_ = t->loaded_stamp_;
  return t;
}

std::unique_ptr<TlsContext> TlsContext::create(const TlsConfig& cfg, std::string& error) {
  return make(cfg, false, error);
}

std::unique_ptr<TlsContext> TlsContext::createClient(const TlsConfig& cfg, std::string& error) {
  return make(cfg, true, error);
}

std::string TlsContext::crlWarning(int64_t now_s, int64_t warn_within_s) const {
  if (cfg_.crl_file.empty()) return {};
  BioPtr bio(BIO_new_file(cfg_.crl_file.c_str(), "r"));
  if (!bio) return {};
  std::string out;
  while (X509_CRL* raw = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
    std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>> crl(raw);
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
    if (!next) continue;
    int days = 0, secs = 0;
    std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>> now(ASN1_TIME_set(nullptr, time_t(now_s)));
    if (!now || ASN1_TIME_diff(&days, &secs, now.get(), next) != 1) continue;
    const int64_t left = int64_t(days) * 86400 + secs;
    std::string when;
    if (BioPtr mem(BIO_new(BIO_s_mem())); mem && ASN1_TIME_print(mem.get(), next)) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(mem.get(), &data);
      when.assign(data, size_t(n));
    }
    if (left <= 0) {
      out = "the CRL " + cfg_.crl_file + " expired (nextUpdate " + when +
            "): every client certificate is refused until a fresh CRL is in place";
      break;
    }
    if (left <= warn_within_s && out.empty())
      out = "the CRL " + cfg_.crl_file + " expires on " + when + " (in " + std::to_string(left / 3600) +
            " h): client certificates will be refused after it unless it is renewed";
  }
  ERR_clear_error();  // the end of the file reads as an error
  return out;
}

std::string TlsContext::stamp() const {
  std::string s;
  appendStamp(s, cfg_.cert_file);
  appendStamp(s, cfg_.key_file);
  appendStamp(s, cfg_.ca_file);
  appendStamp(s, cfg_.ca_dir);
  appendStamp(s, cfg_.crl_file);
  return s;
}

bool TlsContext::reload(std::string& error) {
  // The stamp is taken before reading: a file rewritten during the load is
  // seen as changed again at the next check.
  loaded_stamp_ = stamp();
  CtxPtr fresh = build(cfg_, client_, error);
  if (!fresh) return false;
  ctx_.reset(fresh.release());
  serial_ = serialOf(ctx_.get());
  return true;
}

bool TlsContext::filesChanged() {
  std::string now = stamp();
  const bool stable = now == seen_stamp_;
  seen_stamp_ = std::move(now);
  return stable && seen_stamp_ != loaded_stamp_;
}

}  // namespace petrel::tls
