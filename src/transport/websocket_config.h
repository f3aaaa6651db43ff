// src/transport/websocket_config.h — the WebSocket settings of one listener,
// as read from the `websocket:` mapping of a listener in config.yaml. Plain
// data, so that src/config/config.h can hold it.
#pragma once

#include <cstdint>
#include <string>

namespace petrel {

struct WebSocketConfig {
  // The request target clients upgrade on (the query string is ignored).
  std::string path = "/mqtt";
  // The largest frame payload accepted from a client (larger: close 1009)
  // and sent to it (larger output is split). 0 until the configuration is
  // loaded; then, unless set, limits.max_packet_size + kFrameSlack, so that
  // a frame holding the largest packet and a few small ones is accepted.
  uint32_t max_frame_size = 0;
  static constexpr uint32_t kFrameSlack = 4096;
  // The largest HTTP request head (request line and header fields).
  uint32_t max_header_bytes = 8192;
  // From the accept (the TLS handshake included, on wss) to the upgrade.
  uint32_t handshake_timeout_ms = 10000;
};

}  // namespace petrel
