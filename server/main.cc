// inferd: one binary with subcommands. `serve` (the default: `inferd` alone
// serves the bundled model) runs the gRPC server; `generate` runs the engine
// in-process.
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include <CLI/CLI.hpp>

#include "server/generate_command.h"
#include "server/serve_command.h"
#include "server/server_config.h"

namespace {

int Main(int argc, char** argv) {
  CLI::App app{"inferd: a high-throughput LLM inference server"};
  app.set_version_flag("--version", std::string(INFERD_VERSION));
  app.require_subcommand(0, 1);

  CLI::App* serve = app.add_subcommand("serve", "serve the gRPC API (the default)");
  inferd::ServerConfigFlags serve_flags(serve);

  inferd::GenerateOptions generate_options;
  CLI::App* generate = app.add_subcommand("generate", "run prompts through the engine in-process, JSON Lines out");
  inferd::AddGenerateFlags(generate, &generate_options);

  CLI11_PARSE(app, argc, argv);
  if (generate->parsed()) return inferd::RunGenerate(generate_options);
  absl::StatusOr<inferd::ServerConfig> config = serve_flags.Resolve();
  if (!config.ok()) {
    std::fprintf(stderr, "inferd serve: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  return inferd::RunServe(*std::move(config));
}

}  // namespace

// Errors are statuses everywhere; this is the last resort for what throws
// anyway (std::bad_alloc from a library), so the process still ends with one
// line and an exit code rather than SIGABRT.
int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "inferd: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inferd: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "inferd: unexpected error\n");
  }
  return 1;
}
