// src/metrics/exposition.h — text in the Prometheus exposition format
// (version 0.0.4): one `# HELP` and one `# TYPE` line per metric family,
// then its samples, `name{label="value",...} value`. Names, label names and
// the escaping of help texts and label values are checked and done here, so
// that whatever a topic, group or bridge name holds, the output parses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace petrel {

class Exposition {
 public:
  using Label = std::pair<std::string_view, std::string_view>;
  using Labels = std::initializer_list<Label>;

  // Starts a family: `type` is "counter", "gauge" or "histogram". A
  // counter's name ends in _total (its samples carry the name as given).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, uint64_t value, Labels labels = {});
  void sample(std::string_view name, double value, Labels labels = {});
  // A whole histogram family from per-bucket counts (not cumulative):
  // `counts` has n + 1 entries, the last for values above bounds[n - 1].
  void histogram(std::string_view name, std::string_view help, const double* bounds, const uint64_t* counts,
                 size_t n, double sum);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

  // [a-zA-Z_:][a-zA-Z0-9_:]* (metric names) and [a-zA-Z_][a-zA-Z0-9_]*
  // (label names).
  static bool validName(std::string_view name);
  static bool validLabelName(std::string_view name);
  // A float as the format writes it: shortest round-trip text, +Inf, -Inf, NaN.
  static std::string number(double v);

 private:
  void begin(std::string_view name, Labels labels);
  void labelValue(std::string_view v);

  std::string out_;
};

}  // namespace petrel
