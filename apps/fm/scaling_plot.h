#pragma once
// Log-log plots for `fm scaling fit --plot`: points and fitted curves drawn
// to a PNG with PLplot (its cairo driver), when fm was built with it.
#include <string>
#include <vector>

namespace fm::app {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // positive values
  int colour = 1;            // 1 black, 2 blue, 3 red, 4 green, 5 orange, 6 purple, 7 grey
  enum Style { points, line, dashed, dotted } style = line;
  bool in_legend = true;
};

// fm::Error when this fm has no PLplot, PLplot lacks its PNG driver, or
// `path` cannot be written.
void plot_loglog(const std::string& path, const std::string& title, const std::string& x_label,
                 const std::string& y_label, const std::vector<PlotSeries>& series);

}  // namespace fm::app
