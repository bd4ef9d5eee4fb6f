// The Jinja interpreter, one language feature per test: each template's
// expected output is what Jinja2 3.1 renders for it with Hugging Face's
// settings (trim_blocks, lstrip_blocks, loop controls, json.dumps tojson),
// checked with Debian's python3-jinja2 when the case was written. Parse
// errors name their line and column; render errors are statuses.
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/chat_template/template.h"

namespace inferd::jinja {
namespace {

// Renders `source` with the JSON object `context`; the error text on failure.
std::string Render(const std::string& source, const std::string& context = "{}") {
  absl::StatusOr<Template> parsed = Template::Parse(source);
  if (!parsed.ok()) return "PARSE ERROR: " + std::string(parsed.status().message());
  const Value variables = FromJson(nlohmann::ordered_json::parse(context));
  absl::StatusOr<std::string> text = parsed->Render(variables.as_dict());
  if (!text.ok()) return "RENDER ERROR: " + std::string(text.status().message());
  return *text;
}

TEST(JinjaTemplate, IfElifElse) {
  EXPECT_EQ(Render(R"j({% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %} {% endfor %})j"),
            R"j(one two many )j");
}

TEST(JinjaTemplate, LoopVariables) {
  EXPECT_EQ(Render(R"j({% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %})j"),
            R"j(1032TrueFalse3|2121FalseFalse3|3210FalseTrue3|)j");
}

TEST(JinjaTemplate, LoopPrevNextAndCycle) {
  EXPECT_EQ(Render(R"j({% for x in [1, 2, 3] %}{{ loop.previtem is defined }}{{ loop.nextitem | default('-') }}{{ loop.cycle('a', 'b') }} {% endfor %})j"),
            R"j(False2a True3b True-a )j");
}

TEST(JinjaTemplate, LoopFilterAndElse) {
  EXPECT_EQ(Render(R"j({% for x in range(6) if x is odd %}{{ x }}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %})j"),
            R"j(135|empty)j");
}

TEST(JinjaTemplate, BreakContinue) {
  EXPECT_EQ(Render(R"j({% for x in range(10) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %})j"),
            R"j(023)j");
}

TEST(JinjaTemplate, TupleUnpacking) {
  EXPECT_EQ(Render(R"j({% for k, v in d.items() %}{{ k }}={{ v }} {% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %})j", R"j({"d": {"z": 1, "a": 2}})j"),
            R"j(z=1 a=2 37)j");
}

TEST(JinjaTemplate, SetDoesNotLeakOutOfLoops) {
  EXPECT_EQ(Render(R"j({% set x = 'outer' %}{% for i in [1] %}{% set x = 'inner' %}{{ x }} {% endfor %}{{ x }})j"),
            R"j(inner outer)j");
}

TEST(JinjaTemplate, NamespaceCarriesAcrossLoops) {
  EXPECT_EQ(Render(R"j({% set ns = namespace(total=0, seen=false) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% set ns.seen = true %}{% endfor %}{{ ns.total }} {{ ns.seen }})j"),
            R"j(6 True)j");
}

TEST(JinjaTemplate, SetBlockAndMultipleTargets) {
  EXPECT_EQ(Render(R"j({% set a, b = 1, 2 %}{% set body %}[{{ a }}{{ b }}]{% endset %}{{ body }})j"),
            R"j([12])j");
}

TEST(JinjaTemplate, Macros) {
  EXPECT_EQ(Render(R"j({% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }})j"),
            R"j(Hi A! Hi B? Hi C.)j");
}

TEST(JinjaTemplate, CallBlock) {
  EXPECT_EQ(Render(R"j({% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}inner{% endcall %})j"),
            R"j([inner])j");
}

TEST(JinjaTemplate, FilterBlock) {
  EXPECT_EQ(Render(R"j({% filter upper %}shout {{ 'this' }}{% endfilter %})j"),
            R"j(SHOUT THIS)j");
}

TEST(JinjaTemplate, StringFilters) {
  EXPECT_EQ(Render(R"j({{ '  x  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ 'hello wORLD' | title }}|{{ 'hELLO' | capitalize }}|{{ 'aXbX' | replace('X', '-') }})j"),
            R"j(x|hi|ABab|Hello World|Hello|a-b-)j");
}

TEST(JinjaTemplate, LengthAndDefault) {
  EXPECT_EQ(Render(R"j({{ 'héllo' | length }} {{ [1, 2] | length }} {{ {'a': 1} | count }} {{ missing | default('d') }} {{ '' | default('e', true) }} {{ none | default('kept') }} {{ missing | d('alias') }})j"),
            R"j(5 2 1 d e None alias)j");
}

TEST(JinjaTemplate, ListFilters) {
  EXPECT_EQ(Render(R"j({{ [3, 1, 2] | sort | join(',') }} {{ ['b', 'A', 'c'] | sort | join }} {{ [1, 2, 3] | reverse | list }} {{ [1, 1, 2] | unique | list }} {{ [1, 2] | first }}{{ [1, 2] | last }} {{ [4, 9] | max }}{{ [4, 9] | min }} {{ [1, 2, 3] | sum }})j"),
            R"j(1,2,3 Abc [3, 2, 1] [1, 2] 12 94 6)j");
}

TEST(JinjaTemplate, SelectRejectMap) {
  EXPECT_EQ(Render(R"j({{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ msgs | rejectattr('role', 'eq', 'user') | list | length }} {{ [1, 2, 3, 4] | select('even') | list }} {{ [0, 1, 2] | reject | list }} {{ ['a', 'b'] | map('upper') | join }})j", R"j({"msgs": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}]})j"),
            R"j(u1,u2 1 [2, 4] [0] AB)j");
}

TEST(JinjaTemplate, ItemsDictsortAndDictMethods) {
  EXPECT_EQ(Render(R"j({{ d | items | list }} {{ d | dictsort }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('b') }} {{ d.get('zz', 0) }} {{ d.get('zz') }})j", R"j({"d": {"b": 2, "a": 1}})j"),
            R"j([('b', 2), ('a', 1)] [('a', 1), ('b', 2)] ['b', 'a'] [2, 1] 2 0 None)j");
}

TEST(JinjaTemplate, ToJson) {
  EXPECT_EQ(Render(R"j({{ v | tojson }}|{{ v | tojson(indent=2) }}|{{ 'é"\n' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }})j", R"j({"v": {"s": "x", "n": null, "b": true, "i": 3, "f": 1.5, "l": [], "d": {}}})j"),
            R"j({"s": "x", "n": null, "b": true, "i": 3, "f": 1.5, "l": [], "d": {}}|{
  "s": "x",
  "n": null,
  "b": true,
  "i": 3,
  "f": 1.5,
  "l": [],
  "d": {}
}|"é\"\n"|"\u00e9"|{"a": 2, "b": 1}|[1,2])j");
}

TEST(JinjaTemplate, StringMethods) {
  EXPECT_EQ(Render(R"j({{ ' a '.strip() }}|{{ 'xax'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a\n\n'.rstrip('\n') }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a,b,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'hello world'.title() }}|{{ 'abcb'.find('b') }}{{ 'abcb'.count('b') }}|{{ '-'.join(['x', 'y']) }}|{{ 'ab'.upper() }}{{ 'AB'.lower() }})j"),
            R"j(a|a|a|a|TrueTrue|['a', 'b', 'c']|['a', 'b,c']|['a', 'b']|['a,b', 'c']|bba|Hello World|12|x-y|ABab)j");
}

TEST(JinjaTemplate, Tests) {
  EXPECT_EQ(Render(R"j({{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ n is none }}{{ x is string }}{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ d is mapping }}{{ x is iterable }}{{ l is sequence }}{{ true is boolean }}{{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 2 is in [1, 2] }}{{ x is lower }}{{ 'A' is upper }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ x is not none }})j", R"j({"x": "s", "n": null, "d": {}, "l": [1]})j"),
            R"j(TrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue)j");
}

TEST(JinjaTemplate, InAndNotIn) {
  EXPECT_EQ(Render(R"j({{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 'z' not in 'abc' }}{{ 3 not in [1] }})j"),
            R"j(TrueTrueTrueTrueTrue)j");
}

TEST(JinjaTemplate, Comparisons) {
  EXPECT_EQ(Render(R"j({{ 1 < 2 }}{{ 2 <= 1 }}{{ 'a' < 'b' }}{{ 1 == 1.0 }}{{ [1, 2] == [1, 2] }}{{ 1 != 2 }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }})j"),
            R"j(TrueFalseTrueTrueTrueTrueTrueFalse)j");
}

TEST(JinjaTemplate, LogicReturnsOperands) {
  EXPECT_EQ(Render(R"j({{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ none or [] or 'last' }}|{{ not 0 }}|{{ not (1 and 0) }})j"),
            R"j(x|b||last|True|True)j");
}

TEST(JinjaTemplate, Ternary) {
  EXPECT_EQ(Render(R"j({{ 'yes' if x else 'no' }} {{ 'yes' if not x else 'no' }} [{{ 'only' if false }}] {{ 1 if false else 2 if true else 3 }})j", R"j({"x": 1})j"),
            R"j(yes no [] 2)j");
}

TEST(JinjaTemplate, Arithmetic) {
  EXPECT_EQ(Render(R"j({{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 3 ** 2 }} {{ -2 }} {{ 1.5 + 1 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 10 / 4 * 2 }})j"),
            R"j(7 9 3 -4 1 2 3.5 64 -2 2.5 abab [1, 2] 5.0)j");
}

TEST(JinjaTemplate, TildeConcatenates) {
  EXPECT_EQ(Render(R"j({{ 1 ~ 'a' ~ none ~ true ~ missing }})j"),
            R"j(1aNoneTrue)j");
}

TEST(JinjaTemplate, SlicingAndIndexing) {
  EXPECT_EQ(Render(R"j({{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-1] }} {{ l[10] is defined }} {{ s[1:3] }} {{ s[::-1] }} {{ s[-1] }} {{ l[1:100] }})j", R"j({"l": [1, 2, 3, 4], "s": "héllo"})j"),
            R"j([2, 3, 4] [1, 2, 3] [4, 3, 2, 1] [1, 3] 4 False él olléh o [2, 3, 4])j");
}

TEST(JinjaTemplate, PrintsPythonValues) {
  EXPECT_EQ(Render(R"j({{ none }}|{{ true }}|{{ 1.0 }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e-7 }}|{{ [1, 'a', none, true] }}|{{ {'k': 'v', 'n': [1]} }}|{{ "it's" }}|{{ ['it\'s'] }}|{{ missing }})j"),
            R"j(None|True|1.0|0.30000000000000004|1e+20|1e-07|[1, 'a', None, True]|{'k': 'v', 'n': [1]}|it's|["it's"]|)j");
}

TEST(JinjaTemplate, AttributeAndItemAccess) {
  EXPECT_EQ(Render(R"j({{ m.role }} {{ m['role'] }} {{ m.missing is defined }} {{ m.nested.x }} {{ l.0 }} {{ n.anything is defined }})j", R"j({"m": {"role": "user", "nested": {"x": 5}}, "l": ["first"], "n": null})j"),
            R"j(user user False 5 first False)j");
}

TEST(JinjaTemplate, WhitespaceControl) {
  EXPECT_EQ(Render(R"j(a  {%- if true -%}  b  {%- endif -%}  c {{- ' d ' -}} e {# c -#}  f)j"),
            R"j(abc d e f)j");
}

TEST(JinjaTemplate, TrimAndLstripBlocks) {
  EXPECT_EQ(Render(R"j(<
  {% if true %}
  x
  {% endif %}
  {# comment #}
>
)j"),
            R"j(<
  x
>)j");
}

TEST(JinjaTemplate, PlusDisablesLstrip) {
  EXPECT_EQ(Render(R"j(<
  {%+ if true %}x{% endif %}
>)j"),
            R"j(<
  x>)j");
}

TEST(JinjaTemplate, StringLiterals) {
  EXPECT_EQ(Render(R"j({{ 'a' 'b' }}{{ "q\"q" }}{{ 'tab\there' }}{{ '\u00e9\x41' }}{{ 'unknown \d escape' }})j"),
            R"j(abq"qtab	hereéAunknown \d escape)j");
}

TEST(JinjaTemplate, DictAndListLiterals) {
  EXPECT_EQ(Render(R"j({% set d = {'a': 1, 'b': [1, 2], 'c': {'x': none}} %}{{ d.b[1] }}{{ d['c'].x is none }}{{ (1, 2)[0] }}{{ [] | length }})j"),
            R"j(2True10)j");
}

TEST(JinjaTemplate, IntAndFloatFilters) {
  EXPECT_EQ(Render(R"j({{ '42' | int + 1 }} {{ '3.7' | int }} {{ 'x' | int }} {{ 'x' | int(5) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 2 | float }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ -3 | abs }} {{ 3 | string ~ 'x' }})j"),
            R"j(43 3 0 5 3 2.5 2.0 2.57 2.0 3 3x)j");
}

TEST(JinjaTemplate, IndentAndWordcount) {
  EXPECT_EQ(Render(R"j({{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ 'one two  three' | wordcount }})j"),
            R"j(a
  b

  c|  a
  b|3)j");
}

TEST(JinjaTemplate, RangeAndDict) {
  EXPECT_EQ(Render(R"j({{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(3, 0, -1) | list }} {{ dict(a=1, b=2) }})j"),
            R"j([0, 1, 2] [1, 3, 5] [3, 2, 1] {'a': 1, 'b': 2})j");
}

TEST(JinjaTemplate, TrailingNewlineDropped) {
  EXPECT_EQ(Render(R"j(text
)j"),
            R"j(text)j");
}

// transformers' {% generation %} marks assistant text; it renders its body.
TEST(JinjaTemplate, GenerationBlockIsTransparent) {
  EXPECT_EQ(Render("{% for m in ['x', 'y'] %}{% generation %}{{ m }}{% endgeneration %}{% endfor %}"), "xy");
}

TEST(JinjaTemplate, ParseErrorsNameLineAndColumn) {
  const std::pair<std::string, std::string> cases[] = {
      {"a\n{{ x | no_such_filter }}", "line 2, column 8: unknown filter 'no_such_filter'"},
      {"{% if x is no_such_test %}{% endif %}", "line 1, column 12: unknown test 'no_such_test'"},
      {"x\n  {% include 'other' %}", "line 2, column 6: unknown statement 'include'"},
      {"{{ 'a'.no_such_method() }}", "line 1, column 8: unknown method 'no_such_method'"},
      {"\n\n{{ no_such_function(1) }}", "line 3, column 4: unknown function 'no_such_function'"},
      {"{% for x in y %}\n{{ x }}", "line 1, column 4: this block is never closed (expected {% endfor %})"},
      {"{% if x %}{% endfor %}", "line 1, column 14: unknown statement 'endfor'"},
      {"{{ x ", "line 1, column 1: tag {{ is never closed by }}"},
      {"{# note", "line 1, column 1: comment {# is never closed by #}"},
      {"{{ 'abc }}", "line 1, column 4: string literal is never closed"},
      {"{{ 1 + }}", "line 1, column 8: unexpected '}}'"},
      {"{{ a b }}", "line 1, column 6: expected '}}', got 'b'"},
      {"{% break %}", "line 1, column 4: 'break' outside a for loop"},
      {"{{ x ; }}", "line 1, column 6: unexpected character ';'"},
      {"{% for x in y recursive %}{% endfor %}", "line 1, column 15: recursive loops are not supported"},
      {"{{ f(*args) }}", "line 1, column 6: argument unpacking (* and **) is not supported"},
      // Only built-in functions and the template's macros can be called.
      {"{{ x() }}", "line 1, column 4: unknown function 'x'"},
  };
  for (const auto& [source, error] : cases) {
    const absl::StatusOr<Template> parsed = Template::Parse(source);
    ASSERT_FALSE(parsed.ok()) << source;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << source;
    EXPECT_EQ(parsed.status().message(), error) << source;
  }
}

TEST(JinjaTemplate, MacrosMayBeCalledBeforeTheirDefinitionIsParsed) {
  // Names are checked once the whole template is parsed.
  EXPECT_EQ(Render("{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}B{% endmacro %}{{ a() }}"), "B");
}

TEST(JinjaTemplate, RaiseExceptionIsARenderError) {
  EXPECT_EQ(Render("ok\n{% if bad %}{{ raise_exception('Roles must alternate') }}{% endif %}", R"({"bad": true})"),
            "RENDER ERROR: line 2, column 16: raise_exception: Roles must alternate");
  EXPECT_EQ(Render("{% if bad %}{{ raise_exception('x') }}{% endif %}fine", R"({"bad": false})"), "fine");
}

TEST(JinjaTemplate, RenderErrorsNameLineAndColumn) {
  EXPECT_EQ(Render("{{ 'a' + 1 }}"), "RENDER ERROR: line 1, column 8: unsupported operand types for +: 'str' and 'int'");
  EXPECT_EQ(Render("\n{{ missing.attr }}"),
            "RENDER ERROR: line 2, column 11: 'missing' is undefined (reading its attribute 'attr')");
  EXPECT_EQ(Render("{{ missing + 1 }}"), "RENDER ERROR: line 1, column 12: 'missing' is undefined");
  EXPECT_EQ(Render("{% for x in 3 %}{% endfor %}"), "RENDER ERROR: line 1, column 4: 'int' object is not iterable");
  EXPECT_EQ(Render("{% set x = 1 %}{% set x.a = 2 %}"),
            "RENDER ERROR: line 1, column 19: cannot set attribute 'a' of 'x': only a namespace() takes attributes");
  EXPECT_EQ(Render("{{ 1 // 0 }}"), "RENDER ERROR: line 1, column 6: division by zero");
  EXPECT_EQ(Render("{{ [1] < 'a' }}"), "RENDER ERROR: line 1, column 4: '<' not supported between 'list' and 'str'");
  EXPECT_EQ(Render("{{ x.strip() }}", R"({"x": 1})"),
            "RENDER ERROR: line 1, column 5: 'x.strip' is not callable (its type is undefined)");
}

TEST(JinjaTemplate, LimitsStopRunawayTemplates) {
  EXPECT_EQ(Render("{{ range(1000000) | length }}"),
            "RENDER ERROR: line 1, column 4: range() is longer than 100000 items");
  EXPECT_EQ(Render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
            "RENDER ERROR: line 1, column 19: macros nested deeper than 100 calls");
  const std::string loops = Render("{% for a in range(2000) %}{% for b in range(2000) %}{% endfor %}{% endfor %}");
  EXPECT_NE(loops.find("steps"), std::string::npos) << loops;
  const std::string big = Render("{% for a in range(20000) %}{{ 'x' * 1000 }}{% endfor %}");
  EXPECT_NE(big.find("larger than"), std::string::npos) << big;
}

TEST(JinjaTemplate, LstripAndTrimBlocksCanBeTurnedOff) {
  absl::StatusOr<Template> plain =
      Template::Parse("<\n  {% if true %}\n  x\n  {% endif %}\n>", LexerOptions{.trim_blocks = false, .lstrip_blocks = false});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain->Render(Dict()), "<\n  \n  x\n  \n>");
}

TEST(JinjaTemplate, DeepNestingIsRefusedNotAStackOverflow) {
  const std::string parens = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_NE(Render(parens).find("nested deeper than"), std::string::npos);
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  EXPECT_NE(Render(ifs).find("nested deeper than"), std::string::npos);
  EXPECT_NE(Render("{{ " + std::string(5000, '-') + "1 }}").find("nested deeper than"), std::string::npos);
}

// Mangled real templates either fail to parse, fail to render, or render:
// never crash or hang (ASan and UBSan builds make this stricter).
TEST(JinjaTemplate, MangledTemplatesNeverCrash) {
  std::vector<std::string> sources;
  for (const char* file : {"chatml.jinja", "mistral.jinja", "features.jinja"}) {
    std::ifstream in(std::string(INFERD_SOURCE_DIR) + "/tests/chat_template/data/templates/" + file);
    std::ostringstream text;
    text << in.rdbuf();
    sources.push_back(text.str());
    ASSERT_FALSE(sources.back().empty()) << file;
  }
  const char* pieces[] = {"{{", "}}", "{%", "%}", "{#", "#}", "(", ")", "[", "]", "{", "}", "|", " is ", " not ",
                          "-", "'", "\"", "\\", " if ", " else ", ":", ",", ".", "loop", " in ", "~", "**", "\n"};
  const std::string context = R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                  "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>",
                                  "settings": {"count": 2, "nested": {"inner": "x"}}, "tools": []})";
  const Value variables = FromJson(nlohmann::ordered_json::parse(context));
  std::mt19937 random(15);
  int parsed = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string source = sources[random() % sources.size()];
    for (int edits = 1 + random() % 3; edits > 0; --edits) {
      const size_t at = random() % (source.size() + 1);
      switch (random() % 3) {
        case 0:
          source.erase(at, random() % 8);
          break;
        case 1:
          source.insert(at, pieces[random() % std::size(pieces)]);
          break;
        default:
          source.insert(at, source.substr(random() % source.size(), random() % 16));
      }
    }
    absl::StatusOr<Template> t = Template::Parse(source);
    if (!t.ok()) continue;
    ++parsed;
    (void)t->Render(variables.as_dict());
  }
  EXPECT_GT(parsed, 0);
}

}  // namespace
}  // namespace inferd::jinja
