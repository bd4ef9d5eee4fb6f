// The bundled stories260K re-exported by tests/models/export_stories260k.py
// (HF directories, GGUF files), written once per test process into its
// temporary folder: the script takes well under a second.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tests/testing/subprocess.h"

namespace inferd::testing {

// The export folder: hf/, hf-sharded/, hf-bf16/, stories260K-f32.gguf,
// stories260K-q8_0.gguf. Empty (and a test failure) if the script failed.
inline const std::string& ExportedStories260K() {
  static const std::string* const dir = [] {
    const std::string out = ::testing::TempDir() + "/stories260K-export";
    const CommandResult r = RunCommand("/usr/bin/python3 " INFERD_SOURCE_DIR "/tests/models/export_stories260k.py " INFERD_SOURCE_DIR
                                       "/models/stories260K " + ShellQuote(out) + " 2>&1");
    if (r.exit_code != 0) {
      ADD_FAILURE() << "export_stories260k.py failed: " << r.output;
      return new std::string();
    }
    return new std::string(out);
  }();
  return *dir;
}

}  // namespace inferd::testing
