// src/util/service_notify.h — readiness for a service manager (systemd's
// Type=notify): a datagram to the socket named by $NOTIFY_SOCKET, as
// sd_notify(3) describes it, without linking libsystemd. Does nothing when
// the variable is not set (not started by systemd).
#pragma once

#include <string_view>

namespace petrel {

// Sends `state` ("READY=1", "STOPPING=1", "RELOADING=1", "STATUS=...").
// Returns false only when $NOTIFY_SOCKET is set and the send failed.
bool notifyServiceManager(std::string_view state);

}  // namespace petrel
