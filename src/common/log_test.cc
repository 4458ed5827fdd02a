#include "src/common/log.h"

#include <gtest/gtest.h>

namespace gdp::log {
namespace {

TEST(LogTest, RendersTextFieldsAndQuotesWhereNeeded) {
  EXPECT_EQ(Render("device unhealthy", {{"device", "GPU-1"}, {"xid", 79}, {"reason", "fell off"}},
                   Format::kText),
            R"(device unhealthy device=GPU-1 xid=79 reason="fell off")");
  EXPECT_EQ(Render("empty", {{"v", ""}}, Format::kText), R"(empty v="")");
}

TEST(LogTest, RendersJsonFields) {
  EXPECT_EQ(Render("x \"y\"", {{"k", "a b"}}, Format::kJson), R"("msg":"x \"y\"","k":"a b")");
}

TEST(LogTest, ParsesLevels) {
  struct Case {
    const char* text;
    bool ok;
    Level want;
  };
  for (const Case& c : {Case{"debug", true, Level::kDebug}, Case{"info", true, Level::kInfo},
                        Case{"warn", true, Level::kWarn}, Case{"error", true, Level::kError},
                        Case{"verbose", false, Level::kInfo}}) {
    Level got = Level::kInfo;
    EXPECT_EQ(ParseLevel(c.text, &got), c.ok) << c.text;
    if (c.ok) {
      EXPECT_EQ(got, c.want) << c.text;
    }
  }
}

}  // namespace
}  // namespace gdp::log
