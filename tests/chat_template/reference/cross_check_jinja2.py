"""Checks the committed @huggingface/jinja renders against Jinja2 itself.

Hugging Face's transformers renders chat templates with Jinja2 (sandboxed,
trim_blocks and lstrip_blocks on, loop controls, its own tojson and
raise_exception); @huggingface/jinja is its JavaScript port. This renders
every case of ../data/expected_renders.json with Debian's python3-jinja2 set
up the same way and fails on any difference, so the reference the C++ tests
compare with is the one transformers would give too. Exit 77 (skipped)
without jinja2.
"""
import json
import os
import sys

try:
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("skipped: python3-jinja2 is not installed (scripts/install_deps.sh installs it)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
SHARED = os.environ.get("INFERD_SHARED_DIR", os.path.join(HERE, "..", "..", "..", "..", "shared"))


def transformers_environment():
    # transformers.utils.chat_template_utils._compile_jinja_template
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def main():
    env = transformers_environment()
    with open(os.path.join(DATA, "expected_renders.json"), encoding="utf-8") as f:
        expected = json.load(f)
    sources = {}
    for t in expected["templates"]:
        if "file" in t:
            with open(os.path.join(DATA, t["file"]), encoding="utf-8") as f:
                sources[t["name"]] = f.read()
        else:
            path = os.path.join(SHARED, "models", "tokenizers", t["tokenizer_dir"], "tokenizer_config.json")
            with open(path, encoding="utf-8") as f:
                sources[t["name"]] = json.load(f)["chat_template"]
    templates = {t["name"]: t for t in expected["templates"]}
    conversations = {c["name"]: c for c in expected["conversations"]}
    passed = failed = 0
    for render in expected["renders"]:
        t = templates[render["template"]]
        c = conversations[render["conversation"]]
        messages = c["messages"]
        if not t["content_parts"]:
            messages = [
                dict(m, content="\n".join(p["text"] for p in m["content"])) if isinstance(m["content"], list) else m
                for m in messages
            ]
        context = dict(messages=messages, add_generation_prompt=c.get("add_generation_prompt", True),
                       tools=c.get("tools"), **t["special_tokens"])
        try:
            text, error = env.from_string(sources[render["template"]]).render(**context), None
        except TemplateError as e:
            text, error = None, str(e)
        same = text == render["text"] if "text" in render else error is not None and render["error"] in error
        name = render["template"] + "/" + render["conversation"]
        if same:
            passed += 1
        else:
            failed += 1
            print(f"DIFFERENT {name}:\n  jinja2: {text!r} {error or ''}\n  @huggingface/jinja: {render.get('text', render.get('error'))!r}")
    with open(os.path.join(DATA, expected["features_template"]), encoding="utf-8") as f:
        features = env.from_string(f.read())
    for case in expected["features"]:
        if features.render(**case["context"]) == case["text"]:
            passed += 1
        else:
            failed += 1
            print(f"DIFFERENT features/{case['name']}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
