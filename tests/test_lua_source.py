"""Each script carries only the prelude it reaches (app/domain/lua_source.py)."""

from __future__ import annotations

import re

import pytest

from app.domain.lua_source import LUA_DIR, NAMES, SENT_ONCE, _reached, constants, source

PRELUDE = """local P = ARGV[1]
local function helper(x)
  return x .. P
end
-- unused() is named only in this comment
local function unused()
  return 1
end
local forward
local function caller()
  return forward()
end
forward = function()
  return helper('a')
end
redis.setresp(2)
local function finish(reply)
  return reply
end
"""


def test_a_script_keeps_what_it_reaches_through_other_statements_and_no_more():
    # The body with the tail every script ends with (lua_source._script), which uses finish.
    kept = _reached(PRELUDE, "return caller()\nreturn finish(ride(main))")
    assert "local function unused()" not in kept
    # caller -> forward (both its declaration and its assignment) -> helper -> P
    for line in (
        "local P = ARGV[1]",
        "local function helper(x)",
        "local forward",
        "local function caller()",
        "forward = function()",
        "local function finish",
    ):
        assert line in kept, line
    assert "redis.setresp(2)" in kept  # it defines nothing: it may have an effect
    assert kept.index("local P") < kept.index("local function helper") < kept.index("finish")


def test_a_name_the_body_uses_keeps_its_statement_however_it_is_written():
    assert "local function unused()" in _reached(PRELUDE, "local f = unused; return f()")
    assert "local function helper" not in _reached(PRELUDE, "-- helper() is not called\nreturn 1")


DEFINED = re.compile(r"^(?:local\s+function\s+(\w+)|local\s+(\w+))", re.MULTILINE)


@pytest.mark.parametrize("name", NAMES)
def test_no_script_uses_a_name_whose_definition_it_left_out(name):
    whole = constants() + "\n" + (LUA_DIR / "lib.lua").read_text()
    text = source(name)
    defined_in_whole = {a or b for a, b in DEFINED.findall(whole)}
    defined_here = {a or b for a, b in DEFINED.findall(text)}
    used = set(re.findall(r"[A-Za-z_]\w*", re.sub(r"--[^\n]*", "", text)))
    assert (defined_in_whole - defined_here) & used == set()
    tail = "once(main)" if name in SENT_ONCE else "main"
    assert text.endswith(f"return finish(ride({tail}))")


def test_scripts_leave_out_what_they_do_not_reach():
    lengths = {name: len(source(name)) for name in NAMES}
    whole = len(constants()) + len((LUA_DIR / "lib.lua").read_text())
    body = len((LUA_DIR / "publish_event.lua").read_text())
    assert lengths["publish_event"] < whole * 0.75 + body
    assert "local function settle(" not in source("publish_event")
    assert "local function settle(" in source("read_stats")


def test_a_deployments_settings_are_constants_of_the_scripts_that_read_them():
    text = source("set_task_status", {"lease_ms": 1234, "memory_high_watermark": 90.5})
    assert 'local CFG = {["lease_ms"] = 1234, ["memory_high_watermark"] = 90.5}' in text
    assert "cjson.decode(ARGV[2])" in text and "ARGV[3]" not in text  # only the arguments


def test_info_fields_are_read_by_their_exact_name():
    from lupa.lua51 import LuaRuntime  # Redis runs Lua 5.1

    lib = (LUA_DIR / "lib.lua").read_text()
    helper = re.search(r"^local function info_field\(.*?^end$", lib, re.MULTILINE | re.DOTALL)
    info_field = LuaRuntime().execute(helper.group(0) + "\nreturn info_field")
    text = (
        "# Memory\r\nused_memory_rss:5\r\nused_memory:7\r\nused_memory_human:7B\r\n"
        "maxmemory_policy:noeviction\r\nmaxmemory:0\r\n"
    )
    assert (info_field(text, "used_memory"), info_field(text, "maxmemory")) == ("7", "0")
    assert info_field(text, "used_memory_peak") is None
    assert info_field("used_memory:9\r\n", "used_memory") == "9"  # the text's first field
