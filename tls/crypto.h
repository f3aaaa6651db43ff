// tls/crypto.h — the few cryptographic primitives the broker needs outside
// TLS itself (password hashing for the password file, the WebSocket
// handshake's accept key), wrapped so that only tls/ includes OpenSSL
// headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace petrel::tls {

// SHA-512 of the concatenation a || b (64 bytes).
std::string sha512(std::string_view a, std::string_view b);

// SHA-1 of the concatenation a || b (20 bytes). Only for protocols that
// prescribe it (the WebSocket handshake, RFC 6455 §4.2.2), never for
// anything that needs collision resistance.
std::string sha1(std::string_view a, std::string_view b);

// PBKDF2-HMAC-SHA512 with `iterations` rounds, `out_len` bytes of output.
// Returns an empty string if OpenSSL refuses the parameters.
std::string pbkdf2Sha512(std::string_view password, std::string_view salt, uint32_t iterations,
                         size_t out_len);

// `n` bytes from the OpenSSL CSPRNG; empty on failure.
std::string randomBytes(size_t n);

// Compares in time that depends only on the length (CRYPTO_memcmp), so a
// password check does not leak how many leading bytes of a hash matched.
bool constantTimeEqual(std::string_view a, std::string_view b);

// Standard base64 (RFC 4648 §4) with '=' padding.
std::string base64Encode(std::string_view data);
// Accepts padded or unpadded input; returns false on any other character.
bool base64Decode(std::string_view text, std::string& out);

}  // namespace petrel::tls
