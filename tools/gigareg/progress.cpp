// The progress display of `gigareg register` (progress.hpp).
#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace gigareg::cli {
namespace {

constexpr auto kRedrawInterval = std::chrono::milliseconds(100);  // terminal redraws
constexpr auto kLineInterval = std::chrono::seconds(2);           // intermediate log lines
constexpr int kBarCells = 20;

std::string format(const char* fmt, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, a);
  return buf;
}

std::string duration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "?";
  if (seconds < 60) return format("%.1f s", seconds);
  const long s = std::lround(seconds);
  char buf[32];
  if (s < 3600)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  return buf;
}

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// Columns of the terminal behind `stream` (0 when unknown): a redrawn line must not wrap, or
/// '\r' would only return to the start of its last row.
std::size_t terminal_columns(std::FILE* stream) {
  winsize ws{};
  if (::ioctl(::fileno(stream), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

}  // namespace

ProgressStyle detect_progress_style(std::FILE* stream) {
  return ::isatty(::fileno(stream)) ? ProgressStyle::Bar : ProgressStyle::Lines;
}

ProgressDisplay::ProgressDisplay(const RegistrationParams& params, ProgressStyle style, std::FILE* stream)
    : style_(style), out_(stream) {
  for (const StageParams& s : params.stages)
    stages_.push_back({std::string(to_string(s.transform)) + " " + to_string(s.metric.type),
                       s.convergence.iterations});
  current_.last_draw = current_.start = Clock::now();
}

ProgressDisplay::~ProgressDisplay() { finish(); }

std::string ProgressDisplay::level_label(const Level& l) const {
  char buf[160];
  const std::string& name = std::size_t(l.stage) < stages_.size() ? stages_[std::size_t(l.stage)].name : "";
  std::snprintf(buf, sizeof buf, "stage %d/%zu %s level %d/%d", l.stage + 1, stages_.size(), name.c_str(),
                l.level + 1, l.levels);
  return buf;
}

std::string ProgressDisplay::bar_line(const Level& l, bool finished) const {
  const int limit = std::max(l.limit, l.done);
  const int filled = limit > 0 ? int(std::lround(double(kBarCells) * l.done / limit)) : kBarCells;
  std::string line = level_label(l) + " [";
  line.append(std::size_t(finished ? kBarCells : filled), '#');
  line.append(std::size_t(finished ? 0 : kBarCells - filled), '.');
  line += "] " + std::to_string(l.done) + "/" + std::to_string(limit);
  if (finished) {
    line += format("  loss %.6g", l.first_loss) + format(" -> %.6g", l.loss);
    line += "  " + duration(seconds_between(l.start, l.last_report));
    if (l.done < l.limit) line += " (converged)";
  } else {
    line += format("  loss %.6g", l.loss);
    // The first report comes after one iteration: time the ones since then.
    if (l.done >= 2 && l.done < limit) {
      const double per_iteration = seconds_between(l.first_report, l.last_report) / double(l.done - 1);
      line += "  " + duration(per_iteration * double(limit - l.done)) + " left";
    }
  }
  return line;
}

void ProgressDisplay::draw(const std::string& line) {
  std::string text = line;
  if (const std::size_t columns = terminal_columns(out_); columns > 1 && text.size() >= columns)
    text.resize(columns - 1);
  const std::size_t width = text.size();
  if (width < drawn_width_) text.append(drawn_width_ - width, ' ');
  std::fprintf(out_, "\r%s", text.c_str());
  std::fflush(out_);
  drawn_width_ = width;
  current_.last_draw = Clock::now();
}

void ProgressDisplay::clear_bar() {
  if (drawn_width_ == 0) return;
  std::fprintf(out_, "\r%s\r", std::string(drawn_width_, ' ').c_str());
  drawn_width_ = 0;
}

void ProgressDisplay::update(const IterationReport& r) {
  const Clock::time_point now = Clock::now();
  if (current_.active && (r.stage != current_.stage || r.level != current_.level)) end_level();
  if (!current_.active) {
    Level l;
    l.active = true;
    l.stage = r.stage;
    l.level = r.level;
    l.levels = r.levels;
    if (std::size_t(r.stage) < stages_.size() && std::size_t(r.level) < stages_[std::size_t(r.stage)].iterations.size())
      l.limit = stages_[std::size_t(r.stage)].iterations[std::size_t(r.level)];
    // The level began when the previous one ended (or the display was made): its set-up counts.
    l.start = current_.start;
    l.first_report = l.last_report = l.last_line = now;
    l.last_draw = now - kRedrawInterval;
    l.first_loss = r.loss;
    current_ = l;
  }
  Level& l = current_;
  l.done = r.iteration + 1;
  l.loss = r.loss;
  l.last_report = now;
  if (style_ == ProgressStyle::Bar) {
    if (now - l.last_draw >= kRedrawInterval || l.done >= l.limit) draw(bar_line(l, false));
    return;
  }
  if (l.limit <= 0 || l.done >= l.limit) return;  // the level's end prints its own line
  const int decile = int(10L * l.done / l.limit);
  if (decile > l.last_decile && now - l.last_line >= kLineInterval) {
    l.last_decile = decile;
    l.last_line = now;
    const double per_iteration = seconds_between(l.first_report, now) / double(std::max(1, l.done - 1));
    std::fprintf(out_, "%s: %d/%d iterations, loss %.6g, about %s left\n", level_label(l).c_str(), l.done,
                 l.limit, l.loss, duration(per_iteration * double(l.limit - l.done)).c_str());
    std::fflush(out_);
  }
}

void ProgressDisplay::end_level() {
  Level& l = current_;
  if (!l.active) return;
  if (style_ == ProgressStyle::Bar) {
    draw(bar_line(l, true));
    std::fputc('\n', out_);
    drawn_width_ = 0;
  } else {
    std::fprintf(out_, "%s: %d/%d iterations%s, loss %.6g -> %.6g, %s\n", level_label(l).c_str(), l.done,
                 std::max(l.limit, l.done), l.done < l.limit ? " (converged)" : "", l.first_loss, l.loss,
                 duration(seconds_between(l.start, l.last_report)).c_str());
  }
  std::fflush(out_);
  l.active = false;
  l.start = l.last_report;  // the next level's set-up began after this level's last iteration
}

void ProgressDisplay::message(std::string_view text) {
  const bool redraw = style_ == ProgressStyle::Bar && drawn_width_ > 0;
  clear_bar();
  std::fprintf(out_, "%.*s\n", int(text.size()), text.data());
  if (redraw && current_.active) draw(bar_line(current_, false));
  std::fflush(out_);
}

void ProgressDisplay::finish() {
  end_level();
  clear_bar();
  std::fflush(out_);
}

}  // namespace gigareg::cli
