"""The agent handler's pure parts: prompt templates, fan-out, pricing, the mock
provider, `Spawn`, and what a handler reports through its context. No network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from support import REPO

from apex_worker import AgentConfig, NoRetry, Spawn
from apex_worker.admission import AgentRefused, admit
from apex_worker.agents import agent, mock
from apex_worker.agents.fanout import FanOut, split_items
from apex_worker.agents.pricing import cost_usd, lookup, price_for
from apex_worker.agents.prompt import PromptError, build_messages, render
from apex_worker.agents.provider import Message
from apex_worker.context import Context
from apex_worker.protocol import Price, Progress, Usage
from apex_worker.providers import builtin_providers

UPSTREAM = {
    "plan": {"text": "1. moon\n2. sun", "usage": {"input_tokens": 3}},
    "plan.0": {"text": "the moon pulls"},
    "scores": [1, {"best": "b"}],
}


def ctx(agent: AgentConfig | None = None, sent: list[Any] | None = None) -> Context:
    # The provider resolved as the worker resolves it: by name, from the operator's.
    provider = None if agent is None else admit(agent, builtin_providers())
    return Context(
        run_id="r",
        task_id="t",
        attempt=1,
        idempotency_key="r:t:1",
        worker_id="w",
        emit=(sent if sent is not None else []).append,
        agent=agent,
        provider=provider,
    )


def mock_agent(model: str = "mock-fast", **extra: Any) -> AgentConfig:
    return AgentConfig(name="planner", provider="mock", model=model, **extra)


# -- prompts ---------------------------------------------------------------------------


def test_templates_reach_into_input_and_upstream() -> None:
    scope = {"input": {"topic": "tides", "n": 3, "tags": ["a"]}, "upstream": UPSTREAM}
    assert render("On {{input.topic}} ({{ input.n }}): {{input.tags}}", scope) == (
        'On tides (3): ["a"]'
    )
    assert render("{{upstream.plan.text}}", scope) == "1. moon\n2. sun"
    assert render("{{upstream.plan.usage}}", scope) == '{"input_tokens": 3}'
    assert render("{{upstream.scores.1.best}}", scope) == "b"
    assert json.loads(render("{{upstream}}", scope)) == UPSTREAM
    assert render("{{ not.a.placeholder }} {x}", scope) == "{{ not.a.placeholder }} {x}"


def test_a_spawned_tasks_dotted_id_is_one_key() -> None:
    scope = {"input": {}, "upstream": UPSTREAM}
    assert render("{{upstream.plan.0.text}}", scope) == "the moon pulls"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{upstream.plan.txt}}", "`upstream.plan` has no `txt` (it has: text, usage)"),
        ("{{upstream.critique}}", "`upstream` has no `critique` (it has: plan, plan.0, scores)"),
        ("{{input.topic.name}}", "`input.topic` is a string, so it has no `name`"),
        ("{{upstream.scores.7}}", "`upstream.scores` has 2 items, no item 7"),
        ("{{item}}", "`item` is only defined in a fan-out's prompt"),
    ],
)
def test_a_missing_path_is_a_clear_error_not_retried(template: str, reason: str) -> None:
    scope = {"input": {"topic": "tides"}, "upstream": UPSTREAM}
    with pytest.raises(PromptError) as caught:
        render(template, scope)
    assert isinstance(caught.value, NoRetry)
    assert reason in str(caught.value)
    assert template in str(caught.value)


def test_messages_come_from_prompt_messages_or_everything() -> None:
    assert build_messages({"prompt": "Hi {{input.who}}", "who": "Ann"}, {}) == [
        Message("user", "Hi Ann")
    ]
    assert build_messages("Sum up {{upstream.plan.text}}", UPSTREAM) == [
        Message("user", "Sum up 1. moon\n2. sun")
    ]
    chat = [
        {"role": "system", "content": "Answer in {{input.lang}}."},
        {"role": "user", "content": "Plan: {{upstream.plan.text}}"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Go on."},
    ]
    assert build_messages({"messages": chat, "lang": "French"}, UPSTREAM) == [
        Message("system", "Answer in French."),
        Message("user", "Plan: 1. moon\n2. sun"),
        Message("assistant", "Noted."),
        Message("user", "Go on."),
    ]
    [everything] = build_messages({"topic": "tides", "fan_out": {"max": 2}}, {"a": 1})
    assert json.loads(everything.content) == {"input": {"topic": "tides"}, "upstream": {"a": 1}}


@pytest.mark.parametrize(
    ("input", "reason"),
    [
        ({"prompt": "a", "messages": []}, "not both"),
        ({"prompt": 7}, "input.prompt must be a string"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 1}]}, "messages[0].content"),
        ({"messages": [{"role": "system", "content": "x"}]}, "needs a user message"),
    ],
)
def test_a_malformed_prompt_input_is_not_retried(input: Any, reason: str) -> None:
    with pytest.raises(PromptError, match=re.escape(reason)):
        build_messages(input, {})


# -- fan-out ---------------------------------------------------------------------------


def test_items_come_from_a_json_array_or_the_lines() -> None:
    assert split_items('["moon", "sun", {"x": 1}, ""]') == ["moon", "sun", {"x": 1}]
    assert split_items('```json\n["moon", "sun"]\n```') == ["moon", "sun"]
    listed = "1. moon\n2) sun\n\n- stars\n* wind\n• rain\n(6) snow\n  plain line  \n2.5 stays"
    assert split_items(listed) == [
        *("moon", "sun", "stars", "wind", "rain", "snow"),
        *("plain line", "2.5 stays"),
    ]
    assert split_items("[not json") == ["[not json"]
    assert split_items("   \n") == []


def test_fan_out_children_have_the_submission_shape() -> None:
    input = {
        "topic": "tides",
        "fan_out": {"agent": "researcher", "prompt": "Research {{item}} for {{input.topic}}"},
    }
    fan_out = FanOut.from_input(input, "planner")
    assert fan_out is not None
    children = fan_out.children("1. moon\n2. sun", {"input": input, "upstream": {}})
    assert children == [
        {
            "id": "0",
            "handler": "agent",
            "agent": "researcher",
            "input": {"prompt": "Research moon for tides"},
        },
        {
            "id": "1",
            "handler": "agent",
            "agent": "researcher",
            "input": {"prompt": "Research sun for tides"},
        },
    ]


def test_fan_out_caps_items_and_adds_a_collector_after_them() -> None:
    spec = {
        "max": 2,
        "collect": {"id": "merge", "agent": "writer", "input": {"prompt": "Merge {{upstream}}"}},
    }
    fan_out = FanOut.from_input({"fan_out": spec}, "planner")
    assert fan_out is not None
    children = fan_out.children('["a", "b", "c"]', {"input": {}, "upstream": {}})
    assert [c["id"] for c in children] == ["0", "1", "merge"]
    assert children[0]["agent"] == "planner"  # no fan_out.agent: the same agent
    assert children[0]["input"] == {"prompt": "a"}  # no fan_out.prompt: the item
    assert children[2] == {
        "id": "merge",
        "handler": "agent",
        "agent": "writer",
        "input": {"prompt": "Merge {{upstream}}"},
        "depends_on": ["0", "1"],
    }


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("all", "must be an object"),
        ({"max": 0}, "max must be an integer"),
        ({"max": 2.5}, "max must be an integer"),
        ({"prompt": ["x"]}, "prompt must be a string"),
        ({"agent": ""}, "agent must be"),
        ({"collect": {"id": "3"}}, "collect.id"),
        ({"colect": {}}, "unknown field 'colect'"),
    ],
)
def test_a_malformed_fan_out_is_not_retried(spec: Any, reason: str) -> None:
    with pytest.raises(PromptError, match=reason):
        FanOut.from_input({"fan_out": spec}, "planner")


# -- pricing ---------------------------------------------------------------------------


def test_price_comes_from_the_agent_then_the_file_then_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APEX_PRICES", raising=False)
    own = AgentConfig("a", "openai", "gpt-4o-mini", price=Price(1.0, 2.0))
    assert price_for(own) == (Price(1.0, 2.0), "agent")
    assert price_for(AgentConfig("a", "openai", "gpt-4o-mini")) == (Price(0.15, 0.6), "default")
    assert price_for(AgentConfig("a", "openai", "my-llama")) == (None, "none")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"my-llama": {"input_per_mtok": 0.5, "output_per_mtok": 1}}))
    monkeypatch.setenv("APEX_PRICES", str(prices))
    assert price_for(AgentConfig("a", "openai", "my-llama")) == (Price(0.5, 1.0), "APEX_PRICES")
    assert price_for(AgentConfig("a", "openai", "gpt-4o"))[1] == "default"
    prices.write_text("{oops")
    with pytest.raises(NoRetry, match=r"APEX_PRICES=.*cannot read"):
        price_for(AgentConfig("a", "openai", "my-llama"))


def test_models_match_by_name_vendor_or_dated_version() -> None:
    table = {"gpt-4o": Price(2.5, 10), "gpt-4o-mini": Price(0.15, 0.6)}
    assert lookup(table, "openai/gpt-4o-mini") == Price(0.15, 0.6)
    assert lookup(table, "gpt-4o-mini-2024-07-18") == Price(0.15, 0.6)
    assert lookup(table, "gpt-4o-2024-08-06") == Price(2.5, 10)
    assert lookup(table, "gpt-4omega") is None


def test_cost_is_tokens_times_price_per_million() -> None:
    # The numbers of worker-protocol/examples/result_agent.json.
    assert cost_usd(Price(0.15, 0.6), 120, 40) == 0.000042
    assert cost_usd(None, 120, 40) == 0.0


# -- the mock provider -----------------------------------------------------------------


async def test_the_mock_answers_the_same_everywhere_and_lists_when_asked() -> None:
    plan = {"prompt": "Make a research plan as a numbered list for: {{input.topic}}"}
    first = await agent(plan | {"topic": "how tides work"}, {}, ctx(mock_agent("mock-fast")))
    again = await agent(plan | {"topic": "how tides work"}, {}, ctx(mock_agent("mock-fast")))
    assert first == again
    # Pinned: the answer depends on the model and the prompt only, on any machine.
    assert first["text"] == (
        "1. Map the measurable forces of how tides work\n"
        "2. Test the hidden cycles of how tides work\n"
        "3. Measure the daily records of how tides work"
    )
    other = await agent(plan | {"topic": "how tides work"}, {}, ctx(mock_agent("mock-fast-2")))
    assert other["text"] != first["text"]
    prose = await agent({"prompt": "Critique: a plan"}, {}, ctx(mock_agent()))
    assert "\n" not in prose["text"]
    assert prose["text"].endswith(".")


async def test_the_mock_streams_and_counts_tokens() -> None:
    sent: list[Any] = []
    context = ctx(mock_agent("mock-fast", system_prompt="Be brief."), sent)
    output = await agent({"prompt": "Describe the tides"}, {}, context)
    assert "".join(p.text_delta for p in sent) == output["text"]
    assert all(isinstance(p, Progress) and p.message == "generating" for p in sent)
    prompt = "Be brief.\nDescribe the tides"
    assert output["usage"] == {
        "input_tokens": len(prompt) // 4 + 1,
        "output_tokens": len(output["text"].split()),
        "cost_usd": 0.0,
        "price_source": "none",
    }
    assert (output["model"], output["provider"]) == ("mock-fast", "mock")
    assert context.usage == Usage(len(prompt) // 4 + 1, len(output["text"].split()), 0.0)


async def test_the_mock_honours_max_output_tokens_and_an_agent_price() -> None:
    config = mock_agent(max_output_tokens=3, price=Price(1_000_000.0, 2_000_000.0))
    output = await agent({"prompt": "Describe the tides"}, {}, ctx(config))
    assert len(output["text"].split()) == 3
    usage = output["usage"]
    assert usage["cost_usd"] == usage["input_tokens"] * 1.0 + 3 * 2.0
    assert usage["price_source"] == "agent"


async def test_the_agent_handler_fans_out_with_spawn() -> None:
    input = {
        "prompt": "Make a plan for: tides",
        "fan_out": {"agent": "researcher", "prompt": "Research this step: {{item}}", "max": 2},
    }
    result = await agent(input, {}, ctx(mock_agent()))
    assert isinstance(result, Spawn)
    assert result.output["text"].count("\n") == 2  # three steps, capped to two children
    steps = split_items(result.output["text"])
    assert [c["input"]["prompt"] for c in result.children] == [
        f"Research this step: {steps[0]}",
        f"Research this step: {steps[1]}",
    ]


async def test_the_agent_handler_needs_an_agent_and_a_resolved_provider() -> None:
    with pytest.raises(NoRetry, match="names none"):
        await agent({"prompt": "x"}, {}, ctx(None))
    with pytest.raises(AgentRefused, match='names provider "gemini", which this worker'):
        ctx(AgentConfig("a", "gemini", "m"))
    # A context built without the worker's resolution gets no provider of its own.
    unresolved = ctx(None)
    unresolved.agent = mock_agent()
    with pytest.raises(NoRetry, match="no provider was resolved"):
        await agent({"prompt": "x"}, {}, unresolved)


async def test_a_bad_fan_out_fails_before_any_token_is_spent() -> None:
    context = ctx(mock_agent())
    with pytest.raises(PromptError):
        await agent({"prompt": "x", "fan_out": {"max": -1}}, {}, context)
    assert context.usage is None


# -- Spawn and the context -------------------------------------------------------------


def test_spawn_checks_its_children() -> None:
    spawn = Spawn({"n": 1}, children=[{"id": "a", "handler": "echo", "input": 1}])
    assert spawn.children == [{"id": "a", "handler": "echo", "input": 1}]
    for children, reason in [
        (["a"], "must be a task spec"),
        ([{"handler": "echo"}], "non-empty string `id`"),
        ([{"id": "a", "handler": "echo"}, {"id": "a", "handler": "echo"}], "two children"),
        ([{"id": "a"}], "string `handler`"),
    ]:
        with pytest.raises(NoRetry, match=reason):
            Spawn(None, children=children)


async def test_usage_adds_up_and_text_is_streamed_as_progress() -> None:
    sent: list[Any] = []
    context = ctx(sent=sent)
    assert context.usage is None
    context.report_usage(input_tokens=10, output_tokens=5, cost_usd=0.1)
    context.report_usage(input_tokens=1, cost_usd=0.2)
    assert context.usage == Usage(11, 5, 0.3)
    with pytest.raises(ValueError, match="negative"):
        context.report_usage(output_tokens=-1)
    await context.stream("The moon", message="generating")
    await context.stream("")  # nothing to say: nothing sent
    [progress] = sent
    assert (progress.text_delta, progress.message, progress.progress) == (
        "The moon",
        "generating",
        None,
    )


async def test_the_swarm_example_runs_offline_on_the_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    # examples/swarm.json, with the orchestrator's part played here: agents resolved by
    # name, children namespaced under their parent and fed its output, and the tasks
    # that depended on the parent fed the children's outputs too.
    monkeypatch.setattr(mock, "WORD_DELAY_S", 0.0)
    swarm = json.loads((REPO / "examples" / "swarm.json").read_text())
    agents = {
        name: AgentConfig.from_dict({"name": name} | a) for name, a in swarm["agents"].items()
    }
    plan_spec, critique_spec, report_spec = swarm["tasks"]
    outputs: dict[str, Any] = {}

    async def run(spec: dict[str, Any], upstream: dict[str, Any]) -> Any:
        return await agent(spec["input"], upstream, ctx(agents[spec["agent"]]))

    plan = await run(plan_spec, {})
    assert isinstance(plan, Spawn)
    outputs["plan"] = plan.output
    assert [c["agent"] for c in plan.children] == ["researcher"] * 3
    for child in plan.children:
        outputs[f"plan.{child['id']}"] = await run(child, {"plan": plan.output})
    critique = await run(critique_spec, dict(outputs))
    report = await run(report_spec, {"critique": critique})
    assert report["text"]
    assert report["model"] == "mock-writer"
    assert len({o["text"] for o in outputs.values()}) == 4  # every researcher says its own
