// Comma lists of numbers given on the command line or in a file ("1,1.25,1.5", "8,6,5,4", "0.5,0.5,0.5"),
// parsed in one place so that every flag refuses the same things: an empty cell, trailing text ("2x"), a
// non-finite value. Callers add their own range checks (positive, integer, bitwidths).
#pragma once
#include <string>
#include <vector>

namespace autoqnn {

// Every cell a whole, finite number. Throws std::invalid_argument "<what>: '<cell>' in '<text>' is not a
// number" or "<what>: no value given".
std::vector<double> parse_number_list(const std::string& text, const std::string& what);

}  // namespace autoqnn
