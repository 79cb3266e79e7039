"""Offline instruction templates: documented values first, typed values, no user name in the wrong field, phrasing as
users write (no provider name, no "with value"), and determinism for a seed."""

from __future__ import annotations

import json
import random
import re

import pytest

from petool_lib.synthesis.catalog import Api, load_sample
from petool_lib.synthesis.instructions import (COUNTRY_NAMES, LANGUAGE_NAMES, USERNAMES, _values_for, action_phrase,
                                               build_pools, param_label, render_instruction, template_instruction)
from petool_lib.synthesis.llm import OfflineLLM

SEEDS = range(60)


def _p(name: str, ptype: str = "STRING", description: str = "", default: object = "") -> dict:
    return {"name": name, "type": ptype, "description": description, "default": default}


def _api(req: list[dict], opt: list[dict] = (), tool: str = "Acme Tool", name: str = "doThing",
         desc: str = "Get the details of a thing.", category: str = "Data") -> Api:
    return Api(category, tool, name, desc, required_parameters=list(req), optional_parameters=list(opt))


def _draws(api: Api, key: str) -> list:
    return [template_instruction(api, random.Random(f"t:{i}")).parameters[key] for i in SEEDS]


@pytest.fixture(scope="module")
def sample_pools() -> tuple[list[Api], dict]:
    cat = load_sample()
    return cat.apis, build_pools(cat.apis, OfflineLLM(), seed=0, per_api=3, progress=False)[0]


def test_documented_default_and_description_example_come_first() -> None:
    # the default, when real, is the value used most of the time (the old templates used it 40% of the time)
    api = _api([_p("name", default="Karlsruhe")], desc="Query for the city boundary by name.", category="Mapping")
    values = _draws(api, "name")
    assert sum(v == "Karlsruhe" for v in values) >= 0.6 * len(values)
    # an example quoted in the description ("e.g. '/folder/file.ext'") is a documented value too
    path = _p("path", description="File path e.g. '/folder/file.ext'")
    assert _values_for(path)[0] == "/folder/file.ext"
    assert sum(v == "/folder/file.ext" for v in _draws(_api([path]), "path")) >= 0.6 * len(SEEDS)
    assert _values_for(_p("day", "DATE (YYYY-MM-DD)", "Example: 2023-01-01"))[0] == "2023-01-01"
    assert _values_for(_p("symbol", description="Instrument symbol, such as AAPL or MSFT"))[0] == "AAPL"
    # placeholders are not documented values
    assert "string" not in _values_for(_p("username", default="string"))
    assert "UserName" not in _values_for(_p("UserName", default="UserName"))


def test_values_have_the_declared_type_and_enum_options() -> None:
    api = _api([_p("size", "NUMBER", "Items per page", "10"), _p("verified", "BOOLEAN", "", "true"),
                _p("cabin", "ENUM", "economy | business | first"), _p("resolution", "NUMBER"),
                _p("country", "STRING", "One of the following : HK|AU|SG|TW", "SG"),
                _p("lat", "NUMBER", "", "")])
    for i in SEEDS:
        params = template_instruction(api, random.Random(i)).parameters
        for key in ("size", "resolution", "lat"):
            assert isinstance(params[key], (int, float)) and not isinstance(params[key], bool), (key, params[key])
        assert isinstance(params["verified"], bool)
        assert params["cabin"] in ("economy", "business", "first")
        assert params["country"] in ("HK", "AU", "SG", "TW")
    assert {template_instruction(api, random.Random(i)).parameters["cabin"] for i in SEEDS} == {
        "economy", "business", "first"}
    assert _values_for(_p("size", "NUMBER", "", "10"))[0] == 10  # "10" documented for a NUMBER is the number 10
    assert _values_for(_p("flag", "BOOLEAN", "", "false"))[0] is False


def test_a_storage_name_never_gets_a_user_name() -> None:
    api = _api([_p("storageName", description="Storage name"), _p("name", description="Storage name"),
                _p("bucketName"), _p("folder", description="Folder path e.g. '/folder'")],
               tool="Aspose.Cells Cloud", name="StorageExists", desc="Check if storage exists", category="Other")
    for i in SEEDS:
        ins = template_instruction(api, random.Random(i))
        for key, value in ins.parameters.items():
            assert isinstance(value, str) and value not in USERNAMES, (key, value)
        assert "storage" in ins.parameters["storageName"].lower()
    assert not set(_values_for(_p("storageName", description="Storage name"))) & set(USERNAMES)
    # user names go where a user name is asked for
    assert set(_values_for(_p("username", description="The user name for login"))) <= set(USERNAMES)


def test_instructions_read_like_users_write(sample_pools: tuple[list[Api], dict]) -> None:
    apis, pools = sample_pools
    fortune = _api([], tool="Fortune Cookie", name="defaultRoot",
                   desc="Get a random fortune from the Fortune Cookie API.")
    assert "fortune cookie" not in action_phrase(fortune).lower() and "random fortune" in action_phrase(fortune)
    templates = [(a, ins) for a in apis for ins in pools[a.full_name] if ins.origin == "template"]
    templates += [(fortune, template_instruction(fortune, random.Random(i))) for i in range(5)]
    assert len(templates) > 100
    shown = total = 0
    for a, ins in templates:
        low = ins.text.lower()
        assert "with value" not in low and a.tool.lower() not in low, ins.text
        assert ins.text[0].isupper() and ins.text[-1] in ".?!'", ins.text
        for key, value in ins.parameters.items():  # values are stated in the sentence, not as "label 'value'"
            if isinstance(value, bool):
                continue
            total += 1
            s = value if isinstance(value, str) else json.dumps(value)
            names = {s, COUNTRY_NAMES.get(s.upper(), s).removeprefix("the "), LANGUAGE_NAMES.get(s.lower(), s)}
            shown += any(n in ins.text for n in names)
            label = param_label(next(p for p in a.parameters if p["name"] == key))
            assert f"with {label} '{s}'" not in ins.text, ins.text  # the old "with city 'Paris'"
    assert shown >= 0.95 * total
    openers = {re.match(r"\W*(\w+(?:'\w+)?)", ins.text).group(1) for _, ins in templates}
    assert len(openers) >= 6  # several phrasings, not one template


def test_values_are_woven_into_the_sentence() -> None:
    weather = _api([_p("city", description="City name, e.g. London", default="London")], tool="SkyCast",
                   name="getCurrentWeather", desc="Get the current weather conditions for a city.", category="Weather")
    text = render_instruction(action_phrase(weather), weather, {"city": "Lisbon"}, random.Random(0))
    assert "weather conditions for Lisbon" in text and "a city" not in text
    fx = _api([_p("from", description="Source currency code"), _p("to", description="Target currency code")],
              name="rate", desc="Get the current exchange rate between two currencies.", category="Finance")
    text = render_instruction(action_phrase(fx), fx, {"to": "EUR", "from": "USD"}, random.Random(0))
    assert text.index("from USD") < text.index("to EUR")


def test_pools_are_deterministic_for_a_seed(sample_pools: tuple[list[Api], dict]) -> None:
    apis, pools = sample_pools
    again = build_pools(apis, OfflineLLM(), seed=0, per_api=3, progress=False)[0]
    other = build_pools(apis, OfflineLLM(), seed=1, per_api=3, progress=False)[0]
    dump = lambda p: json.dumps({k: [i.to_dict() for i in v] for k, v in p.items()}, sort_keys=True)  # noqa: E731
    assert dump(again) == dump(pools)
    assert dump(other) != dump(pools)
