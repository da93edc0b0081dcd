#pragma once
// The command line of `gigareg register`, owned by the library: its arguments (antsRegistration's
// stages of -t/-m/-c/-f/-s, or the short form --preset NAME --fixed F --moving M) parsed into
// RegistrationParams and RegistrationFiles, and parameters printed back as a command that parses
// to the same values. The tool hands its arguments here, so a program that embeds gigareg accepts
// exactly the tool's command line; register_files logs the printed command (info level), so every
// run's log says how to repeat it.
//
// What the grammar cannot say is left out of the printed command: settings that have no option
// (Adam's betas and epsilon, the CC epsilon and variance floor, the inverse tolerance, an initial
// affine given as numbers rather than a file) and file names holding ',', '[' or ']'.
// register_command_reproduces() tells whether anything was left out.

#include <string>
#include <vector>

#include "gigareg/registration.hpp"

namespace gigareg {

struct RegisterCommand {
  RegistrationParams params;
  RegistrationFiles files;
};

/// Parses the arguments that follow `gigareg register`, one element per shell word (as argv).
/// Each option takes its value from the next element or after '=' (--device=cpu). The stage
/// options -t, -m, -c, -f, -s repeat, stage by stage; -x repeats once per stage or is given once.
/// The result has passed RegistrationParams::validate(). Throws Error(InvalidArgument, <option
/// or argument>, <what is wrong>), e.g. "--bogus: unknown option" or "-c/--convergence: given 1
/// times for 2 stage(s) ...".
RegisterCommand parse_register_command(const std::vector<std::string>& args);

/// The same for a whole line: split as a POSIX shell splits words (see split_command_line); a
/// leading "gigareg register" is skipped.
RegisterCommand parse_register_command(const std::string& line);

/// "gigareg register ..." in the stage form (the preset's stages written out), one -t/-m/-c/-f/-s
/// group per stage, words quoted for a POSIX shell where they need it. Parsing it gives back
/// `params` (less params.progress) and `files`, unless register_command_reproduces() is false.
std::string format_register_command(const RegistrationParams& params, const RegistrationFiles& files);

/// True when parse_register_command(format_register_command(params, files)) gives back params
/// and files: nothing was left out of the printed command.
bool register_command_reproduces(const RegistrationParams& params, const RegistrationFiles& files);

/// Words of a shell command line: split at unquoted whitespace; '...' keeps everything inside,
/// "..." keeps everything but a backslash before " \ $ `, and a backslash outside quotes keeps
/// the next character. Throws Error(InvalidArgument) for an unclosed quote.
std::vector<std::string> split_command_line(const std::string& line);

/// The options parse_register_command knows, one per paragraph ("-t,--transform VALUE" then
/// what it takes), for the tool's --help.
std::string register_command_help();

// Equality of what a command sets (the round trip's test). RegistrationParams' progress callback
// is not compared: it is no part of a command.
bool operator==(const MetricParams& a, const MetricParams& b);
bool operator==(const ConvergenceParams& a, const ConvergenceParams& b);
bool operator==(const StageParams& a, const StageParams& b);
bool operator==(const InitialTransform& a, const InitialTransform& b);
bool operator==(const RegistrationParams& a, const RegistrationParams& b);
bool operator==(const RegistrationFiles& a, const RegistrationFiles& b);

}  // namespace gigareg
