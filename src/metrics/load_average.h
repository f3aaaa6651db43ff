// src/metrics/load_average.h — mosquitto's "load" figures for $SYS
// ($SYS/broker/load/.../1min, 5min, 15min): how many events a minute, as
// exponentially weighted moving averages over 1, 5 and 15 minutes of a
// counter that only grows. Fed with the counter's value at each tick.
#pragma once

#include <cmath>
#include <cstdint>

namespace petrel {

class LoadAverage {
 public:
  static constexpr double kWindowsS[3] = {60, 300, 900};

  // `total`: the counter now; `dt_s`: seconds since the previous update
  // (the first: since the counter was 0).
  void update(uint64_t total, double dt_s) {
    if (dt_s <= 0 || total < last_) {
      last_ = total;
      return;
    }
    const double per_minute = static_cast<double>(total - last_) * 60.0 / dt_s;
    last_ = total;
    for (int i = 0; i < 3; ++i) {
      const double keep = std::exp(-dt_s / kWindowsS[i]);
      avg_[i] = per_minute + keep * (avg_[i] - per_minute);
    }
  }
  // Events a minute, averaged over 1, 5 or 15 minutes (i = 0, 1, 2).
  double perMinute(int i) const { return avg_[i]; }

 private:
  double avg_[3] = {0, 0, 0};
  uint64_t last_ = 0;
};

}  // namespace petrel
