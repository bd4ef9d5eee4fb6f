// The built-in library a template calls: filters (x | trim), tests
// (x is defined), the methods of str and dict values (x.startswith('a')),
// attribute and item access, and global functions (namespace, range,
// raise_exception, ...). The parser asks the Is* functions so that an
// unknown name fails when the template is loaded, not when it renders.
//
// Every function here reports a render error by throwing RenderError; the
// evaluator adds the template position and Template::Render turns it into a
// Status (it never leaves this folder).
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "server/chat_template/value.h"

namespace inferd::jinja {

struct RenderError {
  std::string message;
  int line = 0;  // 0: not yet known; the evaluator fills in the node's position
  int column = 0;
  bool raised = false;  // raise_exception() in the template
};

[[noreturn]] void ThrowRenderError(std::string message);

bool IsFilter(absl::string_view name);
Value ApplyFilter(absl::string_view name, const Value& operand, const CallArgs& args);

bool IsTest(absl::string_view name);
bool ApplyTest(absl::string_view name, const Value& operand, const CallArgs& args);

// The names that may follow a dot and be called: str and dict methods, and
// the loop object's cycle().
bool IsMethod(absl::string_view name);

// object.name: a bound method, a dict key, a namespace attribute; undefined
// when missing; an error on an undefined object (`what` names it).
Value GetAttribute(const Value& object, absl::string_view name, absl::string_view what);
// object[key]: list and str indexes (negative from the end), dict keys,
// then attributes as Jinja falls back.
Value GetItem(const Value& object, const Value& key, absl::string_view what);
// object[start:stop:step] of a list or str (each bound may be undefined).
Value Slice(const Value& object, const Value& start, const Value& stop, const Value& step);

// The functions every template sees: namespace, range, dict,
// raise_exception, strftime_now.
bool IsGlobalFunction(absl::string_view name);
Value GlobalFunction(absl::string_view name);

// Python's int(x) and float(x) for the filters and for `range` arguments.
int64_t RequireInt(const Value& value, absl::string_view what);

}  // namespace inferd::jinja
