// src/metrics/thread_cpu.h — CPU time of the broker's threads, by name, read
// from /proc when a scrape asks: which thread a busy broker is bound by.
//
// With `workers:` above 1 the main loop (sessions, routing, the store's
// batches) and the worker loops (sockets, TLS, WebSocket) are threads of
// their own; the main loop busy while the workers idle is the limit that
// more cores do not raise (README "Event loops and cores").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace petrel {

struct ThreadCpu {
  std::string thread;  // "main", a Petrel thread's name (petrel-io-1, petrel-store), or "other"
  double seconds = 0;  // user and system
};

// The process's threads: "main" (the thread that runs main(), the main
// loop) first, then Petrel's named threads ("petrel-..."), by name, then
// "other": the rest summed (libuv's thread pool, the cluster's NATS
// client). Empty where /proc cannot be read.
std::vector<ThreadCpu> threadCpu();

// From the text of /proc/<pid>/task/<tid>/stat: utime + stime, in clock
// ticks. False if it is not such a line. The name in it (in parentheses)
// may hold spaces and parentheses itself: the fields are counted from the
// last ')'.
bool parseTaskStat(std::string_view stat, uint64_t& ticks);

}  // namespace petrel
