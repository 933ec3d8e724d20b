"""`@keel.tool`: schemas from signatures, validation, sync and async calls, module loading."""

from __future__ import annotations

import json
import re
import sys
import threading
import types
from typing import Any

import pytest

import keel
from keel.formation import FormationError
from keel.tools import TOOL_ATTRIBUTE, PythonTool, ToolArgumentsError, load_python_tools
from tests.fakes import python_tools

CONTEXT = keel.ToolContext(idempotency_key="s/t/c", session="s", turn_id="t", call_id="c")


def spec(fn: Any) -> PythonTool:
    found = getattr(fn, TOOL_ATTRIBUTE)
    assert isinstance(found, PythonTool)
    return found


async def invoke(fn: Any, arguments: dict[str, Any], **services: object) -> str:
    return await spec(fn).invoke(arguments, services=services, context=CONTEXT)


def test_the_schema_comes_from_the_signature_and_docstring() -> None:
    add = spec(python_tools.add)

    assert add.name == "add"
    assert add.description == "Add two numbers."
    assert add.parameters == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "a": {"type": "integer", "title": "A", "description": "The first number."},
            "b": {
                "type": "integer",
                "title": "B",
                "description": "The second number.",
                "minimum": 0,
                "default": 1,
            },
        },
        "required": ["a"],
    }


def test_injected_services_and_the_context_stay_out_of_the_schema() -> None:
    lookup = spec(python_tools.lookup)
    whoami = spec(python_tools.whoami)

    assert lookup.name == "lookup_invoice"
    assert list(lookup.parameters["properties"]) == ["invoice_id"]
    assert lookup.inject == ("invoices",)
    assert whoami.parameters["properties"] == {}


def test_the_function_stays_callable() -> None:
    assert python_tools.lookup("A1", {"A1": {"total": 3}}) == {"total": 3}


def test_a_docstring_can_describe_parameters_over_several_lines() -> None:
    @keel.tool(description="Overridden.")
    def convert(amount: float, currency: str = "EUR") -> str:
        """Convert money.

        Args:
            amount: How much,
                in the source currency.
            currency (str): The target currency.

        Returns:
            The amount.
        """
        return f"{amount} {currency}"

    converted = spec(convert)
    properties = converted.parameters["properties"]
    assert converted.description == "Overridden."
    assert properties["amount"]["description"] == "How much, in the source currency."
    assert properties["currency"]["description"] == "The target currency."


def test_the_description_stops_at_the_first_section() -> None:
    @keel.tool
    def ping(host: str) -> str:
        """Check that a host
        answers.
        Args:
            host: Its name.
        """
        return host

    assert spec(ping).description == "Check that a host answers."
    assert spec(ping).parameters["properties"]["host"]["description"] == "Its name."


@pytest.mark.parametrize(
    ("kwargs", "signature", "error"),
    [
        ({"name": "has.dot"}, "def f(x: int): ...", ValueError("tool name 'has.dot'")),
        ({"timeout_s": 0}, "def f(x: int): ...", ValueError("timeout_s must be positive")),
        ({"inject": ("db",)}, "def f(x: int): ...", TypeError("inject names ['db']")),
        ({}, "def f(*items: int): ...", TypeError("must be passable by keyword")),
        ({}, "def f(x: int, /): ...", TypeError("must be passable by keyword")),
    ],
)
def test_tools_the_model_cannot_call_are_refused(
    kwargs: dict[str, Any], signature: str, error: Exception
) -> None:
    namespace: dict[str, Any] = {}
    exec(signature, namespace)
    with pytest.raises(type(error), match=re.escape(str(error))):
        keel.tool(**kwargs)(namespace["f"])


async def test_async_tools_run_and_results_become_json() -> None:
    assert await invoke(python_tools.add, {"a": 2}) == "3"
    assert await invoke(python_tools.add, {"a": 2, "b": 5}) == "7"


async def test_sync_tools_run_in_a_thread_with_the_context() -> None:
    result = json.loads(await invoke(python_tools.whoami, {}))

    assert result["key"] == "s/t/c"
    assert result["thread"] != threading.current_thread().name


async def test_services_are_injected() -> None:
    result = await invoke(python_tools.lookup, {"invoice_id": "A1"}, invoices={"A1": {"total": 12}})
    assert json.loads(result) == {"total": 12}


async def test_invalid_arguments_name_each_field() -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        await invoke(python_tools.add, {"b": -1, "c": 3})
    message = str(caught.value)
    assert "a: Field required" in message
    assert "b: Input should be greater than or equal to 0" in message
    assert "c: Extra inputs are not permitted" in message


def test_modules_are_loaded_and_their_tools_collected() -> None:
    tools = load_python_tools(["tests.fakes.python_tools"])
    assert sorted(tools) == ["add", "explode", "lookup_invoice", "nap", "whoami"]


def test_modules_that_do_not_import_are_formation_errors() -> None:
    with pytest.raises(FormationError) as caught:
        load_python_tools(["tests.fakes.python_tools", "tests.fakes.no_such_module"])
    assert str(caught.value) == (
        "python_tools[1]: cannot import 'tests.fakes.no_such_module':"
        " ModuleNotFoundError: No module named 'tests.fakes.no_such_module'"
    )


def test_two_tools_with_one_name_are_a_formation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    clash = types.ModuleType("clash")

    @keel.tool(name="add")
    def other_add(a: int) -> int:
        return a

    clash.other_add = other_add  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "clash", clash)
    with pytest.raises(FormationError, match=r"python_tools\[1\]: a second tool is named 'add'"):
        load_python_tools(["tests.fakes.python_tools", "clash"])
