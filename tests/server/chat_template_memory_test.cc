// A render frees everything it allocated: macros (whose frames hold them),
// call blocks and self-referencing namespaces must not leave reference
// cycles behind, or every chat request would leak. Counts live heap blocks
// with a replaced operator new/delete (this binary only).
#include <atomic>
#include <cstdlib>
#include <new>

#include <gtest/gtest.h>

#include "server/chat_template/template.h"

namespace {
std::atomic<long> live_blocks{0};
}  // namespace

void* operator new(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  live_blocks.fetch_add(1, std::memory_order_relaxed);
  return p;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  live_blocks.fetch_sub(1, std::memory_order_relaxed);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

namespace inferd::jinja {
namespace {

// Live blocks left behind by rendering `t` once.
long BlocksLeftByRender(const Template& t) {
  const long before = live_blocks.load();
  { absl::StatusOr<std::string> text = t.Render(Dict()); }
  return live_blocks.load() - before;
}

TEST(JinjaTemplateMemory, RendersLeaveNoCycles) {
  const char* sources[] = {
      "{% macro m(x) %}[{{ x }}]{% endmacro %}{{ m(1) }}",
      "{% macro box() %}<{{ caller() }}>{% endmacro %}{% call box() %}in{% endcall %}",
      "{% for i in range(3) %}{% macro inner() %}{{ i }}{% endmacro %}{{ inner() }}{% endfor %}",
      "{% set ns = namespace(a=1) %}{% set ns.self = ns %}{% set ns.list = [ns, {'n': ns}] %}{{ ns.a }}",
      "{% set ns = namespace() %}{% macro m() %}x{% endmacro %}{% set ns.m = m %}{{ ns.m is defined }}",
  };
  for (const char* source : sources) {
    absl::StatusOr<Template> t = Template::Parse(source);
    ASSERT_TRUE(t.ok()) << source << ": " << t.status();
    BlocksLeftByRender(*t);  // first use of the built-in tables
    EXPECT_EQ(BlocksLeftByRender(*t), 0) << source;
  }
}

}  // namespace
}  // namespace inferd::jinja
