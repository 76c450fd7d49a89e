#include "autoqnn/number_text.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace autoqnn {

std::vector<double> parse_number_list(const std::string& text, const std::string& what) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string cell;
  while (std::getline(ss, cell, ',')) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(cell, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (cell.empty() || used != cell.size() || !std::isfinite(v))
      throw std::invalid_argument(what + ": '" + cell + "' in '" + text + "' is not a number");
    out.push_back(v);
  }
  if (out.empty()) throw std::invalid_argument(what + ": no value given");
  if (text.back() == ',') throw std::invalid_argument(what + ": '" + text + "' ends with a comma");
  return out;
}

std::string format_number(const char* printf_format, double v) {
  char buf[128];
  std::snprintf(buf, sizeof buf, printf_format, v);
  return buf;
}

}  // namespace autoqnn
