"""Tool references with wildcards: which tools a name or a pattern names, and in what order."""

from __future__ import annotations

from keel.tool_patterns import allowed, is_pattern, matches, policy_for, resolve, server_of

TIME_TOOLS = ["time.get_current_time", "time.convert_time"]


def test_a_literal_names_only_itself_and_a_pattern_names_what_it_matches() -> None:
    assert not is_pattern("time.get_current_time") and is_pattern("time.*")
    assert is_pattern("fs.read_?") and is_pattern("fs.[rw]*")
    assert matches("time.*", "time.convert_time") and not matches("time.*", "timer.start")
    assert matches("lookup", "lookup") and not matches("lookup", "lookup_invoice")
    assert not matches("fs.read_*", "FS.read_file")  # case matters, on every platform
    assert allowed("time.convert_time", ["lookup", "time.*"])
    assert not allowed("fs.write", ["fs.read_*"])


def test_resolving_keeps_the_references_order_and_each_tool_once() -> None:
    available = ["lookup", *TIME_TOOLS, "fs.read_file", "fs.write_file"]
    assert resolve(["fs.read_*", "time.*", "time.convert_time", "lookup"], available) == [
        "fs.read_file",
        *TIME_TOOLS,
        "lookup",
    ]
    # A literal stays whether or not it is available now; a pattern matching nothing adds none.
    assert resolve(["gone", "nothing.*"], available) == ["gone"]


def test_a_tool_s_own_policy_wins_then_the_first_matching_pattern() -> None:
    policies = {"fs.write_*": "always", "fs.*": "never", "fs.write_log": "never"}
    assert policy_for("fs.write_log", policies, "never") == "never"
    assert policy_for("fs.write_file", policies, "never") == "always"
    assert policy_for("fs.read_file", policies, "always") == "never"
    assert policy_for("lookup", policies, "always") == "always"


def test_the_server_of_a_reference() -> None:
    assert server_of("time.*") == "time" and server_of("lookup") is None
