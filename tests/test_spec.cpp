#include <gtest/gtest.h>

#include "quantizers/registry.h"
#include "quantizers/spec.h"

using namespace autoqnn::quant;

TEST(Spec, RoundTrip) {
  for (const char* t : {"fixed:4", "esb:4:k=1", "apot:3", "afp:5:e=2", "vecq:2", "twn", "uniform:8:per_channel",
                        "uniform:4:asym:grad=pwl_c:r=0.1"}) {
    auto s = QuantSpec::parse(t);
    EXPECT_EQ(QuantSpec::parse(s.to_string()), s) << t;
  }
  EXPECT_EQ(QuantSpec::parse("esb:4:k=1").to_string(), "esb:4:k=1");
  EXPECT_EQ(QuantSpec::parse("ESB:4:k=1").scheme, "esb");
  EXPECT_EQ(QuantSpec::parse("twn").bits, 0);
}

TEST(Spec, ParseErrors) {
  EXPECT_THROW(QuantSpec::parse(""), std::invalid_argument);
  EXPECT_THROW(QuantSpec::parse("esb:4:k="), std::invalid_argument);
  EXPECT_THROW(QuantSpec::parse("esb:4:k=1:k=2"), std::invalid_argument);
  EXPECT_THROW(QuantSpec::parse("esb:4:5"), std::invalid_argument);
  EXPECT_THROW(QuantSpec::parse("esb:0"), std::invalid_argument);
}

TEST(Registry, ValidateNamesWhatIsWrong) {
  try {
    validate_spec(QuantSpec::parse("nosuch:4"), Role::Weight);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("valid:"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("esb"), std::string::npos);
  }
  EXPECT_THROW(validate_spec(QuantSpec::parse("fixed:40"), Role::Weight), std::invalid_argument);
  EXPECT_THROW(validate_spec(QuantSpec::parse("fixed:4:bogus=1"), Role::Weight), std::invalid_argument);
  EXPECT_THROW(validate_spec(QuantSpec::parse("pact:4"), Role::Weight), std::invalid_argument);
  EXPECT_EQ(validate_spec(QuantSpec::parse("twn"), Role::Weight).bits, 2);
  EXPECT_TRUE(validate_spec(QuantSpec::parse("fp32"), Role::Weight).is_fp());
}
