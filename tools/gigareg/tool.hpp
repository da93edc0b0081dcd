#pragma once
// The gigareg tool's command line as an object: every subcommand and its options, parsed and run.
// main.cpp runs it for the executable; the Python package (python/src) runs the same object, so
// that gigareg.ants_registration(args) takes exactly the arguments of `gigareg register` and writes
// the same files.
#include <CLI/CLI.hpp>

#include <map>
#include <string>
#include <vector>

#include "commands.hpp"

namespace gigareg::cli {

class Tool {
 public:
  explicit Tool(RegisterHooks register_hooks = {});
  Tool(const Tool&) = delete;
  Tool& operator=(const Tool&) = delete;

  CLI::App& app() { return app_; }

  /// Parses the words after the program's name ({"register", "-d", "3", ...}). Throws
  /// CLI::ParseError (CLI::CallForHelp for --help), which app().exit(e) prints as the tool does.
  void parse(const std::vector<std::string>& args);

  /// Runs the parsed subcommand with the options every command takes (--compression-level) and
  /// returns its exit code; gigareg::Error propagates.
  int run();

 private:
  CLI::App app_;
  std::map<CLI::App*, Command> commands_;
  std::string compression_;  // --compression-level as given: "auto" or 0-12
  std::string zarr_chunk_ = "64", zarr_codec_ = "zstd";  // --zarr-chunk, --zarr-codec
};

}  // namespace gigareg::cli
