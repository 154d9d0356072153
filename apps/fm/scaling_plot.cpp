#include "scaling_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "fm/error.h"

#ifdef FM_HAVE_PLPLOT
#include <plplot.h>
#endif

namespace fm::app {

#ifndef FM_HAVE_PLPLOT
void plot_loglog(const std::string&, const std::string&, const std::string&, const std::string&,
                 const std::vector<PlotSeries>&) {
  error("--plot: this fm was built without PLplot (install libplplot-dev and plplot-driver-cairo, as tools/setup "
        "does, and configure again)");
}
#else
namespace {

// Tick values for a log axis over [lo, hi]: the powers of ten when the
// range holds two or more, else round numbers 1, 2 or 5 x 10^k apart.
struct Ticks {
  std::vector<double> values;
  bool decades = false;
};

Ticks ticks(double lo, double hi) {
  Ticks t;
  for (int k = int(std::ceil(std::log10(lo))); k <= int(std::floor(std::log10(hi))); ++k)
    t.values.push_back(std::pow(10.0, k));
  t.decades = t.values.size() >= 2;
  if (t.decades) return t;
  t.values.clear();
  const double mag = std::pow(10.0, std::floor(std::log10(hi - lo)));
  for (double step : {0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0}) {
    const double s = step * mag;
    if ((hi - lo) / s > 7) continue;
    for (double v = std::ceil(lo / s) * s; v <= hi * (1 + 1e-12); v += s) t.values.push_back(v);
    break;
  }
  return t;
}

std::string tick_label(double v, bool decades) {
  char buf[64];
  if (decades) std::snprintf(buf, sizeof buf, "10#u%d#d", int(std::lround(std::log10(v))));
  else std::snprintf(buf, sizeof buf, "%g", v);
  std::string t = buf;  // 5e+08 -> 5e8
  for (const char* junk : {"e+0", "e+", "e-0"})
    if (const size_t at = t.find(junk); at != std::string::npos) t.replace(at, std::strlen(junk), junk[1] == '-' ? "e-" : "e");
  return t;
}

// PLplot ends the process on a fatal error (plexit), so what can fail is
// checked first: the driver, and the output file.
void check_can_draw(const std::string& path) {
  std::vector<const char*> menu(256), names(256);
  const char** m = menu.data();
  const char** n = names.data();
  int count = int(names.size());
  plgDevs(&m, &n, &count);
  bool found = false;
  for (int i = 0; i < count; ++i) found = found || std::strcmp(n[i], "pngcairo") == 0;
  if (!found) error("--plot: PLplot has no pngcairo driver (install plplot-driver-cairo)");
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) error("--plot: cannot write ", path);
  std::fclose(f);
}

}  // namespace

void plot_loglog(const std::string& path, const std::string& title, const std::string& x_label,
                 const std::string& y_label, const std::vector<PlotSeries>& series) {
  // The window holds every point, and the lines' x range; lines that leave
  // it vertically (a wild extrapolation) are clipped rather than squashing
  // the points.
  double x0 = INFINITY, x1 = 0, y0 = INFINITY, y1 = 0;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (s.style != PlotSeries::points && s.x[i] > 0) {
        x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
        continue;
      }
      if (!(s.x[i] > 0 && s.y[i] > 0 && std::isfinite(s.x[i]) && std::isfinite(s.y[i]))) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (!(x1 > 0 && y1 > 0)) error("--plot: no points to draw");
  check_can_draw(path);
  // Margins of the (log) ranges on each side.
  const double lx0 = std::log10(x0), lx1 = std::log10(x1), ly0 = std::log10(y0), ly1 = std::log10(y1);
  const double mx = std::max(lx1 - lx0, 0.1) * 0.02, my = std::max(ly1 - ly0, 0.02) * 0.12;
  const double ax0 = lx0 - mx, ax1 = lx1 + mx, ay0 = ly0 - my, ay1 = ly1 + my;

  plsdev("pngcairo");
  plsfnam(path.c_str());
  plsetopt("geometry", "1000x700");
  plscolbg(255, 255, 255);
  const int palette[8][3] = {{255, 255, 255}, {0, 0, 0},     {31, 119, 180},  {214, 39, 40},
                             {44, 160, 44},   {255, 127, 14}, {148, 103, 189}, {150, 150, 150}};
  for (int i = 0; i < 8; ++i) plscol0(i, palette[i][0], palette[i][1], palette[i][2]);
  plinit();
  pladv(0);
  plvsta();
  plwind(ax0, ax1, ay0, ay1);
  // Grid lines and labels at round values; PLplot's own log ticks around the box.
  const Ticks xt = ticks(std::pow(10.0, ax0), std::pow(10.0, ax1));
  const Ticks yt = ticks(std::pow(10.0, ay0), std::pow(10.0, ay1));
  plcol0(7);
  pllsty(3);
  plwidth(0.5);
  for (double v : xt.values) pljoin(std::log10(v), ay0, std::log10(v), ay1);
  for (double v : yt.values) pljoin(ax0, std::log10(v), ax1, std::log10(v));
  pllsty(1);
  plwidth(1);
  plcol0(1);
  plbox("bcstl", 0, 0, "bcstl", 0, 0);
  for (double v : xt.values)
    plmtex("b", 1.6, (std::log10(v) - ax0) / (ax1 - ax0), 0.5, tick_label(v, xt.decades).c_str());
  for (double v : yt.values)
    plmtex("lv", 0.6, (std::log10(v) - ay0) / (ay1 - ay0), 1.0, tick_label(v, yt.decades).c_str());
  plmtex("b", 3.4, 0.5, 0.5, x_label.c_str());
  plmtex("l", 4.6, 0.5, 0.5, y_label.c_str());
  plmtex("t", 1.5, 0.5, 0.5, title.c_str());

  std::vector<PLINT> opts, colours, styles, symbol_numbers;
  std::vector<PLFLT> widths, scales;
  std::vector<const char*> texts, symbols;
  for (const auto& s : series) {
    std::vector<PLFLT> lx, ly;
    for (size_t i = 0; i < s.x.size(); ++i)
      if (s.x[i] > 0 && s.y[i] > 0) lx.push_back(std::log10(s.x[i])), ly.push_back(std::log10(s.y[i]));
    plcol0(s.colour);
    const PLINT style = s.style == PlotSeries::dashed ? 4 : s.style == PlotSeries::dotted ? 2 : 1;
    if (s.style == PlotSeries::points) {
      plssym(0, 1.3);
      plstring(PLINT(lx.size()), lx.data(), ly.data(), "\u25CF");  // a filled circle (cairo draws Unicode)
    } else {
      pllsty(style);
      plwidth(s.style == PlotSeries::dotted ? 1.0 : 2.0);
      plline(PLINT(lx.size()), lx.data(), ly.data());
      pllsty(1);
      plwidth(1);
    }
    if (!s.in_legend) continue;
    opts.push_back(s.style == PlotSeries::points ? PL_LEGEND_SYMBOL : PL_LEGEND_LINE);
    colours.push_back(s.colour);
    styles.push_back(style);
    widths.push_back(s.style == PlotSeries::dotted ? 1.0 : 2.0);
    scales.push_back(1.3);
    symbol_numbers.push_back(1);
    texts.push_back(s.label.c_str());
    symbols.push_back("\u25CF");
  }
  if (!texts.empty()) {
    PLFLT w = 0, h = 0;
    plscol0a(0, 255, 255, 255, 0.85);
    pllegend(&w, &h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, PL_POSITION_INSIDE | PL_POSITION_TOP | PL_POSITION_RIGHT,
             0.02, 0.02, 0.08, 0, 1, 1, 0, 0, PLINT(texts.size()), opts.data(), 1.0, 0.9, 2.0, 0.0, colours.data(),
             texts.data(), nullptr, nullptr, nullptr, nullptr, colours.data(), styles.data(), widths.data(),
             colours.data(), scales.data(), symbol_numbers.data(), symbols.data());
  }
  plend();
}
#endif

}  // namespace fm::app
