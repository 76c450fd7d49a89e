#include "policy_table.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace autoqnn::cli {

namespace {

std::string fmt_double(double v, int prec) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(prec) << v;
  return os.str();
}

}  // namespace

std::string format_policy_table(const Policy& p) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"#", "layer", "kind", "shape", "params", "MACs", "weight", "act", "w bytes", "w bits"});
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const auto& l = p.layers[i];
    std::string w = l.weight.to_string();
    if (!l.channel_bits.empty()) w += " (per-channel bits)";
    if (!l.bias_correction.empty()) w += " +bc " + l.bias_correction;
    std::string a = l.act.to_string();
    if (!l.act_channel_bits.empty()) a += " (per-channel bits)";
    rows.push_back({std::to_string(i), l.name, l.kind, shape_string(l.shape), std::to_string(l.params),
                    std::to_string(l.macs), w, a, std::to_string(l.weight_bytes),
                    fmt_double(l.weight_bits, 2)});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  // numbers right-aligned, text left-aligned
  const std::vector<bool> right = {true, false, false, false, true, true, false, false, true, true};
  std::ostringstream os;
  os << "policy for " << p.model << " (" << p.fingerprint << ", input " << p.config.in_channels << "x"
     << p.config.image_size << "x" << p.config.image_size << ", format_version "
     << std::max(p.format_version, policy_required_version(p)) << ")\n";
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) {
      if (c) os << "  ";
      os << (right[c] ? std::right : std::left) << std::setw(static_cast<int>(width[c])) << r[c];
    }
    os << "\n";
  }
  const auto& t = p.totals;
  double ratio = t.weight_bytes > 0 ? static_cast<double>(t.fp32_weight_bytes) / t.weight_bytes : 0;
  os << "totals: " << t.params << " weights, " << t.weight_bytes << " bytes (fp32 " << t.fp32_weight_bytes << ", "
     << fmt_double(ratio, 2) << "x smaller), " << fmt_double(t.avg_weight_bits, 3) << " bits/weight on average\n"
     << "        activation footprint " << t.act_bytes << " bytes/image, " << std::setprecision(4) << t.bops / 1e9
     << " GBOPs/image\n";
  if (!p.search.is_null()) {
    os << "search: ";
    bool first = true;
    for (const char* k : {"method", "budget", "seed", "version"}) {
      if (!p.search.contains(k)) continue;
      os << (first ? "" : ", ") << k << " " << (p.search[k].is_string() ? p.search[k].get<std::string>() : p.search[k].dump());
      first = false;
    }
    if (first) os << "(provenance recorded)";
    os << "\n";
  }
  return os.str();
}

}  // namespace autoqnn::cli
