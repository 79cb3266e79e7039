"""One synthesized entry: parameter mapping to another provider, and examples that depend only on (seed, split,
index, target)."""

from __future__ import annotations



from petool_lib.core.data import provider_of
from petool_lib.synthesis.examples import Synthesizer, map_parameters
from petool_lib.synthesis.pipeline import Preparation

from .helpers import make_api as _api


def test_map_parameters_to_another_provider() -> None:
    src = _api("C", "A", "x", ("city", "units"))
    dst = _api("C", "B", "y", ("location", "Units"))
    assert map_parameters({"city": "Paris", "units": "metric"}, src, dst) == {"location": "Paris", "Units": "metric"}


def test_an_example_depends_only_on_its_seed_split_and_index(prep: Preparation) -> None:
    target = prep.test_groups[0]
    first = prep.synth.example("test", 2, target, 7)
    for i, g in enumerate(prep.train_groups[:3]):  # other examples in between change nothing
        prep.synth.example("train", i, g, 100 + i)
    again = prep.synth.example("test", 2, target, 7)
    assert again.entry.to_dict() == first.entry.to_dict() and again.user.to_dict() == first.user.to_dict()
    assert (again.rejected_call, again.rejected_provider, again.aligned_provider) == (
        first.rejected_call, first.rejected_provider, first.aligned_provider)
    other = prep.synth.example("test", 3, target, 7)
    assert other.entry.to_dict() != first.entry.to_dict()


def test_an_example_is_consistent(prep: Preparation) -> None:
    synth: Synthesizer = prep.synth
    for i, g in enumerate(prep.train_groups[:4]):
        ex = synth.example("train", i, g, 1000 + i)
        e = ex.entry
        assert e.entry_id == 1000 + i and e.func == g.gid and ex.split == "train"
        assert e.ground_truth["tool_name"] in g.members and ex.rejected_call["tool_name"] in g.members
        assert ex.rejected_provider == provider_of(ex.rejected_call["tool_name"]) != ex.user.tool_comb[0]
        assert ex.user.tool_comb[0] == provider_of(e.ground_truth["tool_name"])
        assert ex.user.preferred[g.gid] == ex.user.tool_comb[0]
        assert e.history_length == len(ex.full_history) and e.num_tools_combined == len(ex.user.tool_comb)
        assert {provider_of(h.tool_name) for h in ex.rejected_items} == {ex.rejected_provider}
        assert not {h.tool_name for h in ex.full_history} & set(g.members)
