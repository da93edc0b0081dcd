#pragma once
// Running the gigareg tool from tests: where it is, and one run with its exit code and output.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace gigareg::test {

/// The tool: $GIGAREG_CLI, else the build's (GIGAREG_CLI_PATH), else tools/gigareg next to the
/// test's own directory; empty when none exists.
inline std::string cli_path() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("GIGAREG_CLI")) return env;
#ifdef GIGAREG_CLI_PATH
  if (fs::exists(GIGAREG_CLI_PATH)) return GIGAREG_CLI_PATH;
#endif
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path candidate = self.parent_path().parent_path() / "tools" / "gigareg";
  return fs::exists(candidate) ? candidate.string() : std::string();
}

/// `s` quoted for the shell.
inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct ToolRun {
  int rc = -1;
  std::string out, err;
  std::string all() const { return out + err; }
};

/// Runs `program` with `args` (already quoted where needed), stdout and stderr captured
/// separately (stderr is a file, not a terminal).
inline ToolRun run_program(const std::string& program, const std::string& args) {
  namespace fs = std::filesystem;
  static int counter = 0;
  const std::string stem = (fs::temp_directory_path() / ("gigareg_cli_" + std::to_string(::getpid()) + "_" +
                                                         std::to_string(counter++))).string();
  const std::string cmd = quote(program) + " " + args + " > " + quote(stem + ".out") + " 2> " + quote(stem + ".err");
  const int status = std::system(cmd.c_str());
  ToolRun r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(stem + ".out");
  r.err = slurp(stem + ".err");
  fs::remove(stem + ".out");
  fs::remove(stem + ".err");
  return r;
}

/// Runs the gigareg tool with `args`.
inline ToolRun run_cli(const std::string& args) { return run_program(cli_path(), args); }

}  // namespace gigareg::test

#define REQUIRE_CLI()                                                                       \
  do {                                                                                      \
    if (::gigareg::test::cli_path().empty())                                                \
      GTEST_SKIP() << "the gigareg tool is not built (set GIGAREG_CLI)";                    \
  } while (0)
