"""The OpenAI-compatible backend against a real server: `transformers serve` with the pinned SmolLM2,
started by the test on a loopback port (no mocked HTTP)."""

import pytest
from serving import free_port, requests_received, transformers_serve

from merr_builder.annotate.fine import fine_annotations, make_llm
from merr_builder.annotate.llm.openai_server import LLMServerError, OpenAIServerLLM
from merr_builder.annotate.llm.protocol import ChatRequest, GenerationSettings
from merr_builder.annotate.prompts import FINE_QUESTION, FINE_SYSTEM
from merr_builder.assets import smollm2_dir
from merr_builder.config import ConfigError, load_config


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    model = str(smollm2_dir())
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with transformers_serve(smollm2_dir(), log) as url:
        yield url, model, log


def _requests() -> list[ChatRequest]:
    captions = [
        "The person smiles broadly, cheeks raised. The tone is bright. Saying: we won!",
        "The person frowns, brows lowered, jaw tight. The tone is loud and sharp. Saying: get out.",
        "The person's eyes widen and the mouth opens. The tone is high. Saying: really?",
    ]
    labels = ["happy", "angry", "surprise"]
    return [ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=c, label=lab)) for c, lab in zip(captions, labels)]


def test_concurrent_answers_come_back_in_the_callers_order(llm_server):
    url, model, _ = llm_server
    settings = GenerationSettings(max_new_tokens=24)
    together = OpenAIServerLLM(url, model, concurrency=3).generate(_requests(), settings)
    one_by_one = OpenAIServerLLM(url, model, concurrency=1)
    alone = [one_by_one.generate([r], settings)[0] for r in _requests()]
    assert [c.text for c in together] == [c.text for c in alone]
    assert len({c.text for c in together}) == 3 and all(c.text for c in together)
    assert all(0 < c.new_tokens <= 24 and c.finish_reason in ("stop", "length") for c in together)


def test_the_fine_step_runs_through_the_server_from_the_config(llm_server, tmp_path):
    url, model, _ = llm_server
    config = load_config(None, ["annotate.fine_backend=openai", f"annotate.server_url={url}", f"annotate.server_model={model}",
                                "annotate.max_new_tokens=48"]).annotate  # fmt: skip
    llm = make_llm(config)
    assert isinstance(llm, OpenAIServerLLM) and llm.model_id()["file"] == url
    rows = [{"clip_id": f"c{i}", "coarse_caption": r.user.split(" Please sort")[0], "label": lab, "label_source": "label file"}
            for i, (r, lab) in enumerate(zip(_requests(), ["happy", "angry", "surprise"]))]  # fmt: skip
    result = fine_annotations(rows, llm, config, tmp_path / "llm.sqlite")
    assert set(result) == {"c0", "c1", "c2"}
    for caption, status, _ in result.values():  # every answer was checked: kept with its text, or rejected with a reason
        assert (status == "kept" and caption) or (status.startswith("rejected") and caption is None)


def test_an_unreachable_server_is_a_clear_error():
    llm = OpenAIServerLLM(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=0, timeout_s=5)
    with pytest.raises(LLMServerError, match=r"127\.0\.0\.1.*cannot connect"):
        llm.generate(_requests()[:1], GenerationSettings(max_new_tokens=8))


def test_the_openai_backend_needs_a_server_and_a_model():
    with pytest.raises(ConfigError, match="server_url and server_model"):
        load_config(None, ["annotate.fine_backend=openai", "annotate.server_url=http://127.0.0.1:9/v1"])


def test_the_default_concurrency_gives_a_batching_server_more_than_16_requests_at_once(llm_server):
    """The fine step's default (annotate.concurrency) against a real `transformers serve`: by the time the first
    answer comes back, the server has received more requests than the old default of 16 allowed in flight."""
    url, model, log = llm_server
    config = load_config(None, ["annotate.fine_backend=openai", f"annotate.server_url={url}", f"annotate.server_model={model}"]).annotate
    assert config.concurrency >= 256
    llm = make_llm(config)
    before = requests_received(log)
    # 24 short answers: enough to exceed the old 16 in flight, few and short enough to cost seconds, not a minute
    captions = [f"The person in clip {i} smiles and speaks brightly. Saying: hello number {i}." for i in range(24)]
    requests = [ChatRequest(FINE_SYSTEM, FINE_QUESTION.format(coarse_caption=c, label="happy")) for c in captions]
    in_flight_at_first_answer = []

    def first(index, completion):  # noqa: ARG001
        if not in_flight_at_first_answer:
            in_flight_at_first_answer.append(requests_received(log) - before)

    answers = llm.generate(requests, GenerationSettings(max_new_tokens=8), on_answer=first)
    assert len(answers) == 24 and all(a.text for a in answers)
    assert in_flight_at_first_answer[0] > 16, in_flight_at_first_answer
