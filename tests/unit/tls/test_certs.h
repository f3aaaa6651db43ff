// tests/unit/tls/test_certs.h — throwaway keys and certificates for the TLS
// unit tests, made in-process with OpenSSL and written to a temporary dir.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/unit/temp_dir.h"

namespace petrel::testing {

struct KeyCert {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  KeyCert() = default;
  KeyCert(const KeyCert&) = delete;
  KeyCert& operator=(const KeyCert&) = delete;
  KeyCert(KeyCert&& o) noexcept : key(o.key), cert(o.cert) { o.key = nullptr; o.cert = nullptr; }
  ~KeyCert() {
    EVP_PKEY_free(key);
    X509_free(cert);
  }
};

inline void addExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
}

// A certificate for `cn` signed by `issuer` (self-signed when null).
inline KeyCert makeCert(const std::string& cn, long serial, const KeyCert* issuer, bool ca,
                        long days_valid = 30) {
  KeyCert kc;
  kc.key = EVP_EC_gen("P-256");
  kc.cert = X509_new();
  X509_set_version(kc.cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(kc.cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(kc.cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(kc.cert), days_valid * 86400);
  X509_set_pubkey(kc.cert, kc.key);
  X509_NAME* name = X509_get_subject_name(kc.cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert : kc.cert;
  X509_set_issuer_name(kc.cert, X509_get_subject_name(issuer_cert));
  if (ca) {
    addExt(kc.cert, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    addExt(kc.cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    addExt(kc.cert, issuer_cert, NID_basic_constraints, "CA:FALSE");
    addExt(kc.cert, issuer_cert, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  }
  X509_sign(kc.cert, issuer ? issuer->key : kc.key, EVP_sha256());
  return kc;
}

// A scratch directory for one test's keys and certificates.
class TempDir : public petrel::TempDir {
 public:
  TempDir() : petrel::TempDir("petrel-tls-test") {}
};

inline void writeCert(const std::string& path, const KeyCert& kc) {
  FILE* f = std::fopen(path.c_str(), "w");
  PEM_write_X509(f, kc.cert);
  std::fclose(f);
}

inline void writeKey(const std::string& path, const KeyCert& kc) {
  FILE* f = std::fopen(path.c_str(), "w");
  PEM_write_PrivateKey(f, kc.key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

}  // namespace petrel::testing
