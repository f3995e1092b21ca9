"""The config.toml reader: tomllib on Python 3.11+, imagegen's own subset reader before.

The same samples run on every Python: parse_toml_subset (the 3.9/3.10 reader) must give the
hand-written dict, load_toml on the same text in a file must give it too, and where tomllib
exists it must agree with both (which also checks the hand-written dicts). What the subset
reader cannot read is a UsageError with a clear message, never a wrong result.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imagegen

try:
    import tomllib  # type: ignore[import-not-found]
except ImportError:  # Python 3.9 and 3.10
    tomllib = None

HAS_TOMLLIB = sys.version_info >= (3, 11)

# (name, text, the dict it means). Shared by every Python version.
SAMPLES = [
    ("codex config", '''\
# Codex's config.toml, as users write it
model = "gpt-5.5"
model_provider = "azure"          # the provider below
approval_policy = "on-request"
model_reasoning_effort = 'high'
disable_response_storage = true

[model_providers.azure]
name = "Azure"
base_url = "https://example.openai.azure.com/openai/v1"
env_key = "AZURE_OPENAI_API_KEY"
query_params = { api-version = "2025-04-01-preview" }
wire_api = "responses"
request_max_retries = 4
stream_idle_timeout_ms = 300_000

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"

[mcp_servers.docs]
command = "npx"
args = ["-y", "@example/docs-mcp", "--port", "0"]
env = { "API_KEY" = "value", DEBUG = "1" }

[projects."/home/me/code/app"]
trust_level = "trusted"

[tui]
notifications = false
''', {
        "model": "gpt-5.5", "model_provider": "azure", "approval_policy": "on-request",
        "model_reasoning_effort": "high", "disable_response_storage": True,
        "model_providers": {
            "azure": {"name": "Azure", "base_url": "https://example.openai.azure.com/openai/v1",
                      "env_key": "AZURE_OPENAI_API_KEY",
                      "query_params": {"api-version": "2025-04-01-preview"},
                      "wire_api": "responses", "request_max_retries": 4,
                      "stream_idle_timeout_ms": 300000},
            "ollama": {"name": "Ollama", "base_url": "http://localhost:11434/v1"},
        },
        "mcp_servers": {"docs": {"command": "npx",
                                 "args": ["-y", "@example/docs-mcp", "--port", "0"],
                                 "env": {"API_KEY": "value", "DEBUG": "1"}}},
        "projects": {"/home/me/code/app": {"trust_level": "trusted"}},
        "tui": {"notifications": False},
    }),
    ("top-level keys only", 'a = 1\nb = "two"\nc = false\n', {"a": 1, "b": "two", "c": False}),
    ("empty and comments only", "# nothing here\n\n   # indented comment\n\t\n", {}),
    ("dotted tables", '''\
[a.b.c]
x = 1
[a.b]
y = 2
[ a . d ]  # spaces around the dots
z = 3
[a]
w = 4
''', {"a": {"b": {"c": {"x": 1}, "y": 2}, "d": {"z": 3}, "w": 4}}),
    ("dotted keys", '''\
site.name = "x"
site . owner . name = "me"
[t]
p.q = true
''', {"site": {"name": "x", "owner": {"name": "me"}}, "t": {"p": {"q": True}}}),
    ("quoted keys", '''\
"a.b" = 1
'c.d' = 2
"with space" = 3
"" = 4
"caf\\u00e9" = 5
[model_providers."my.provider"]
base_url = "u"
[model_providers.'lit.eral']
base_url = "v"
''', {"a.b": 1, "c.d": 2, "with space": 3, "": 4, "café": 5,
      "model_providers": {"my.provider": {"base_url": "u"}, "lit.eral": {"base_url": "v"}}}),
    ("basic strings with escapes", r'''
quote = "say \"hi\""
backslash = "C:\\Users\\me"
controls = "tab\there\nnewline\rcr\bbs\fff"
short = "caf\u00e9"
long = "smile \U0001F600"
hash = "not # a comment" # but this is
empty = ""
''', {"quote": 'say "hi"', "backslash": "C:\\Users\\me",
      "controls": "tab\there\nnewline\rcr\bbs\fff", "short": "café", "long": "smile \U0001F600",
      "hash": "not # a comment", "empty": ""}),
    ("literal strings", r'''
path = 'C:\Users\me\n'
regex = '<\i\c*\s*>'
quoted = 'He said "hi" # not a comment'
empty = ''
''', {"path": "C:\\Users\\me\\n", "regex": "<\\i\\c*\\s*>",
      "quoted": 'He said "hi" # not a comment', "empty": ""}),
    ("a literal tab inside a basic string", 'a = "x\ty"\n', {"a": "x\ty"}),
    ("utf-8 text", 'name = "Zoë 日本 🎨"\n"ключ" = \'значение\'\n',
     {"name": "Zoë 日本 🎨", "ключ": "значение"}),
    ("integers", 'a = 42\nb = -17\nc = +5\nd = 0\ne = 1_000_000\nf = -0\n',
     {"a": 42, "b": -17, "c": 5, "d": 0, "e": 1000000, "f": 0}),
    ("floats", 'a = 3.14\nb = -0.5\nc = 1e3\nd = 6.02E+23\ne = 1.5e-3\nf = +1.0\ng = 1_000.5\n',
     {"a": 3.14, "b": -0.5, "c": 1000.0, "d": 6.02e23, "e": 0.0015, "f": 1.0, "g": 1000.5}),
    ("booleans", 'yes = true\nno = false\ntrue = "a bare key named true"\n',
     {"yes": True, "no": False, "true": "a bare key named true"}),
    ("comments everywhere", '''\
# whole line
a = 1 # trailing
b = "x"# no space before the hash
[t] # after a header
c = [1, 2] # after an array
  # indented whole line
d = { e = 1 } # after an inline table
''', {"a": 1, "b": "x", "t": {"c": [1, 2], "d": {"e": 1}}}),
    ("one-line arrays", '''\
empty = []
ints = [1, 2, 3]
strings = ["a", 'b', "c,d", "]"]
mixed = [1, "two", true, 4.5]
nested = [[1, 2], ["x"], []]
trailing = [1, 2, ]
spaced = [ 1 ,2 , 3 ]
tables = [{ a = 1 }, { b = "x" }]
''', {"empty": [], "ints": [1, 2, 3], "strings": ["a", "b", "c,d", "]"],
      "mixed": [1, "two", True, 4.5], "nested": [[1, 2], ["x"], []], "trailing": [1, 2],
      "spaced": [1, 2, 3], "tables": [{"a": 1}, {"b": "x"}]}),
    ("inline tables", '''\
empty = {}
point = { x = 1, y = 2 }
nested = { inner = { deep = "yes" }, list = [1, 2] }
dotted = { a.b = 1, a.c = 2 }
quoted = { "k.ey" = "v" }
''', {"empty": {}, "point": {"x": 1, "y": 2},
      "nested": {"inner": {"deep": "yes"}, "list": [1, 2]},
      "dotted": {"a": {"b": 1, "c": 2}}, "quoted": {"k.ey": "v"}}),
    # Codex configs commonly spread MCP server args over several lines.
    ("multi-line arrays", '''\
args = [
  "-y",   # a comment holding a ] bracket
  "@x/docs-mcp",
  "--flag=[a]",
]
nested = [[1, 2], [
  3,
]]
after = "still read"
''', {"args": ["-y", "@x/docs-mcp", "--flag=[a]"], "nested": [[1, 2], [3]],
      "after": "still read"}),
    ("whitespace and line endings", 'a=1\r\n  b =   "two"  \r\n[t]\r\n\tc\t=\ttrue\r\n',
     {"a": 1, "b": "two", "t": {"c": True}}),
]

# Valid TOML the subset reader does not read: each must be a UsageError saying so.
UNSUPPORTED = [
    ("multi-line basic string", 'a = """\nline one\nline two\n"""\n', "multi-line string"),
    ("one-line multi-line basic string", 'a = """x"""\n', "multi-line string"),
    ("multi-line literal string", "a = '''\nraw\n'''\n", "multi-line string"),
    ("array of tables", '[[profiles]]\nname = "a"\n[[profiles]]\nname = "b"\n', "arrays of tables"),
    ("date", "when = 1979-05-27\n", "dates and times"),
    ("date-time", "when = 1979-05-27T07:32:00Z\n", "dates and times"),
    ("time", "at = 07:32:00\n", "dates and times"),
    ("date in an array", "days = [1979-05-27]\n", "dates and times"),
    ("hex integer", "mask = 0xff\n", "hexadecimal"),
    ("octal integer", "mode = 0o600\n", "octal"),
    ("binary integer", "bits = 0b101\n", "binary"),
    ("infinity", "big = inf\n", "line 1"),
    ("not a number", "odd = nan\n", "line 1"),
]

# Not TOML at all: a UsageError too (never an internal error, never a guess).
INVALID = [
    ("unterminated string", 'a = "abc\n'),
    ("unterminated array", "a = [1, 2\n"),
    ("junk after the value", 'a = "b" c\n'),
    ("bad escape", 'a = "\\q"\n'),
    ("bad escape in a key", '"a\\q" = 1\n'),
    ("a surrogate escape", 'a = "\\uD800"\n'),
    ("no value", "a =\n"),
    ("no equals sign", "just words\n"),
    ("empty header", "[]\n"),
    ("bare word value", "a = yes\n"),
    ("a key defined twice", "a = 1\na = 2\n"),
    ("a dotted key over a value", "a = 1\na.b = 2\n"),
    ("a dotted key over a value in an inline table", "a = { b = 1, b.c = 2 }\n"),
    ("a table over a value", "a = 1\n[a.b]\nc = 1\n"),
    ("trailing comma in an inline table", "a = { x = 1, }\n"),
]


def ids(cases: list) -> list[str]:
    return [case[0] for case in cases]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize("name,text,expected", SAMPLES, ids=ids(SAMPLES))
def test_subset_reader_gives_the_expected_dict(name, text, expected):
    assert imagegen.parse_toml_subset(text) == expected


@pytest.mark.parametrize("name,text,expected", SAMPLES, ids=ids(SAMPLES))
def test_load_toml_gives_the_same_dict(tmp_path, name, text, expected):
    """load_toml (tomllib on 3.11+, the subset reader before) on the same file."""
    assert imagegen.load_toml(str(write(tmp_path, text))) == expected
    assert imagegen.load_toml(str(write(tmp_path, text))) == imagegen.parse_toml_subset(text)


@pytest.mark.skipif(not HAS_TOMLLIB, reason="tomllib is Python 3.11+")
@pytest.mark.parametrize("name,text,expected", SAMPLES, ids=ids(SAMPLES))
def test_subset_reader_agrees_with_tomllib(name, text, expected):
    assert tomllib.loads(text) == expected  # the hand-written dicts are right
    assert imagegen.parse_toml_subset(text) == tomllib.loads(text)


def test_floats_keep_their_type():
    """1e3 is a float and 1_000 an int, in both readers."""
    parsed = imagegen.parse_toml_subset("a = 1e3\nb = 1_000\nc = -0.0\n")
    assert type(parsed["a"]) is float and type(parsed["b"]) is int and type(parsed["c"]) is float


@pytest.mark.parametrize("name,text,says", UNSUPPORTED, ids=ids(UNSUPPORTED))
def test_unsupported_toml_is_a_clear_usage_error(name, text, says):
    with pytest.raises(imagegen.UsageError) as caught:
        imagegen.parse_toml_subset(text)
    message = caught.value.message
    assert caught.value.exit_code == 2
    assert "config.toml" in message and says in message
    assert "Python 3.11" in message  # what to do about it
    if HAS_TOMLLIB:
        tomllib.loads(text)  # it is valid TOML: the subset reader only declines it


@pytest.mark.parametrize("name,text,says", UNSUPPORTED, ids=ids(UNSUPPORTED))
def test_load_toml_reads_everything_on_3_11_and_declines_before(tmp_path, name, text, says):
    path = str(write(tmp_path, text))
    if HAS_TOMLLIB:
        assert repr(imagegen.load_toml(path)) == repr(tomllib.loads(text))  # nan != nan
    else:
        with pytest.raises(imagegen.UsageError):
            imagegen.load_toml(path)


@pytest.mark.parametrize("name,text", INVALID, ids=ids(INVALID))
def test_invalid_toml_is_a_usage_error(tmp_path, name, text):
    if HAS_TOMLLIB:
        with pytest.raises(tomllib.TOMLDecodeError):
            tomllib.loads(text)
    with pytest.raises(imagegen.UsageError) as caught:
        imagegen.parse_toml_subset(text)
    assert re.search(r"config\.toml line \d+", caught.value.message)
    with pytest.raises(imagegen.UsageError):
        imagegen.load_toml(str(write(tmp_path, text)))


def test_error_names_the_line(tmp_path):
    text = 'a = 1\n\n# comment\n[t]\nb = "x"\nc = [\n'
    with pytest.raises(imagegen.UsageError) as caught:
        imagegen.parse_toml_subset(text)
    assert "line 6" in caught.value.message


def test_load_toml_rejects_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'model = "caf\xe9"\n')
    with pytest.raises(imagegen.UsageError) as caught:
        imagegen.load_toml(str(path))
    assert str(path) in caught.value.message


# Generated documents ########################################################################

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Inline(dict):
    """A table to be written as an inline table (equal to the plain dict it holds)."""


def basic_string(text: str) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t" and code % 2:
            out.append(char)  # a literal tab is allowed
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif code > 0xFFFF:
            out.append(f"\\U{code:08X}")
        elif code > 0x7F and code % 3 == 0:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def literal_ok(text: str) -> bool:
    return "'" not in text and not any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in text)


def key_text(key: str) -> str:
    if BARE_KEY.fullmatch(key):
        return key
    return f"'{key}'" if literal_ok(key) and len(key) % 2 else basic_string(key)


def value_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f"'{value}'" if literal_ok(value) and len(value) % 2 else basic_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key_text(k)} = {value_text(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def document_text(table: dict, path: tuple = (), comment: str = "") -> str:
    """TOML for a nested dict: plain values first, then each sub-table under its header."""
    lines = []
    for key, value in table.items():
        if not (isinstance(value, dict) and not isinstance(value, Inline)):
            lines.append(f"{key_text(key)} = {value_text(value)}" + (f"  # {comment}" if comment else ""))
    for key, value in table.items():
        if isinstance(value, dict) and not isinstance(value, Inline):
            header = ".".join(key_text(k) for k in path + (key,))
            lines.append(f"[{header}]" + (f" # {comment}" if comment else ""))
            lines.append(document_text(value, path + (key,), comment))
    return "\n".join(line for line in lines if line) + "\n"


keys = st.one_of(st.from_regex(BARE_KEY, fullmatch=True).filter(lambda k: len(k) <= 12),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
scalars = st.one_of(
    strings, st.booleans(), st.integers(-2 ** 63, 2 ** 63 - 1),
    st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=3).map(Inline)),
    max_leaves=8)
tables = st.recursive(
    st.dictionaries(keys, values, max_size=5),
    lambda inner: st.dictionaries(keys, st.one_of(values, inner), max_size=4),
    max_leaves=12)
comments = st.one_of(st.just(""), st.text(st.characters(blacklist_categories=("Cs", "Cc")),
                                          min_size=1, max_size=12))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=tables, comment=comments)
def test_generated_documents_read_back(document, comment):
    """Any document of the supported subset reads back as the dict it was written from (and,
    on 3.11+, as tomllib reads it)."""
    text = document_text(document, comment=comment)
    assert imagegen.parse_toml_subset(text) == document, text
    if HAS_TOMLLIB:
        assert tomllib.loads(text) == document, text


# Through the CLI ############################################################################

def test_responses_backend_reads_a_quoted_provider_id(env, fake, run):
    """A provider id with a dot, quoted in the table header, found by model_provider."""
    env.write_codex_config(
        'model_provider = "corp.gw"  # the quoted table below\n'
        '[model_providers."corp.gw"]\n'
        f'base_url = "{fake.api_base_url}"\nenv_key = "CORP_KEY"\n'
        '[mcp_servers.x]\nargs = ["-y", "pkg"]\nenv = { A = "1" }\n')
    env.set(CORP_KEY=fake.provider_key)
    result = run("a quoted provider", "--backend", "responses")
    assert result.code == 0, result
    assert [r.path for r in fake.requests] == ["/v1/responses"]
    assert (env.work / result.lines[0]).read_bytes() == fake.images_sent[0]


def test_responses_backend_with_a_config_the_subset_cannot_read(env, fake, run):
    """3.9/3.10: exit 2 naming the line and the cure; 3.11+: tomllib reads it and it works."""
    env.write_codex_config(
        f'model_provider = "x"\n[model_providers.x]\nbase_url = "{fake.api_base_url}"\n'
        'env_key = "X_KEY"\n[[profiles_list]]\nname = "a"\n')
    env.set(X_KEY=fake.provider_key)
    result = run("an array of tables", "--backend", "responses")
    if HAS_TOMLLIB:
        assert result.code == 0, result
        assert len(fake.requests) == 1
    else:
        assert result.code == 2, result
        assert "config.toml line 5" in result.err and "Python 3.11" in result.err
        assert fake.requests == []


def test_responses_backend_with_broken_toml_is_exit_2(env, fake, run):
    env.write_codex_config('model_provider = "x\n')
    result = run("broken", "--backend", "responses")
    assert result.code == 2, result
    assert "config.toml" in result.err
    assert fake.requests == []
