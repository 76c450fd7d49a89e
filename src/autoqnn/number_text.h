// Numbers as text, in one place: comma lists given on the command line ("1,1.25,1.5", "8,6,5,4"), parsed so
// that every flag refuses the same things (an empty cell, trailing text "2x", a non-finite value; callers
// add their range checks), and one number printed with a printf format for messages and logs.
#pragma once
#include <string>
#include <vector>

namespace autoqnn {

// Every cell a whole, finite number. Throws std::invalid_argument "<what>: '<cell>' in '<text>' is not a
// number" or "<what>: no value given".
std::vector<double> parse_number_list(const std::string& text, const std::string& what);

// printf-formatted: format_number("%.3f KiB", 1.5) == "1.500 KiB". One double conversion in the format.
std::string format_number(const char* printf_format, double v);

}  // namespace autoqnn
