// The syntax tree of a parsed template: expressions (Expr) and statements
// (Node), each with the line and column of its first token, so that render
// errors point into the template.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/chat_template/value.h"

namespace inferd::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // literal
    kName,      // name
    kList,      // children: items
    kTuple,     // children: items
    kDict,      // children: key0, value0, key1, value1, ...
    kGetAttr,   // children[0].name
    kGetItem,   // children[0][children[1]]
    kSlice,     // children[0][children[1]:children[2]:children[3]] (each bound may be null)
    kCall,      // children[0](children[1..], keywords)
    kFilter,    // children[0] | name(children[1..], keywords); children[0] null in {% filter %}
    kTest,      // children[0] is [not] name(children[1..])
    kUnary,     // name ("-", "+", "not") children[0]
    kBinary,    // children[0] name children[1]: + - * / // % ** ~ and or
    kCompare,   // children[0] ops[0] children[1] ops[1] ...: == != < <= > >= in "not in"
    kCondition, // children[1] if children[0] else children[2] (null: undefined)
  };

  Kind kind;
  int line = 0;
  int column = 0;
  Value literal;
  std::string name;
  bool negated = false;  // kTest: `is not`
  std::vector<ExprPtr> children;
  std::vector<std::string> ops;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // branches, else_body
    kFor,          // {% for targets in expr [if condition] %} body {% else %} else_body
    kSet,          // {% set targets = expr %}, or {% set targets[0].attribute = expr %}
    kSetBlock,     // {% set targets[0] %} body {% endset %}
    kMacro,        // {% macro name(params) %} body
    kCallBlock,    // {% call(params) expr %} body: `caller()` renders body
    kFilterBlock,  // {% filter expr %} body: expr is a kFilter chain on null
    kBreak,
    kContinue,
  };

  Kind kind;
  int line = 0;
  int column = 0;
  std::string text;       // kText; kMacro: the name
  std::string attribute;  // kSet on a namespace attribute
  ExprPtr expr;
  ExprPtr condition;  // kFor: the loop filter
  std::vector<std::string> targets;
  std::vector<std::pair<std::string, ExprPtr>> params;  // name and default (may be null)
  std::vector<std::pair<ExprPtr, Body>> branches;        // kIf: test and body, for if and each elif
  Body body;
  Body else_body;
};

}  // namespace inferd::jinja
