"""The official ``openai`` SDK (pinned) and LangChain's ``ChatOpenAI`` against the dev stack, unchanged:
only ``base_url`` and the API key point them at gpuq. Every answer is a gpuq job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from shared.fakes.ollama import fake_completion_text, fake_embedding
from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from tests.servers import MODEL


@pytest.fixture
def sdk(stack: DevStack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.api_key, max_retries=0, timeout=60) as client:
        yield client


def _question() -> str:
    return f"Why is the sky blue? ({uuid.uuid4().hex[:6]})"


def test_models_list_shows_what_the_pools_serve(sdk: openai.OpenAI) -> None:
    models = sdk.models.list()
    assert MODEL in [m.id for m in models.data] and all(m.object == "model" for m in models.data)
    assert sdk.models.retrieve(MODEL).owned_by == "default"


def test_chat_completion_is_a_job_with_the_model_servers_text_and_usage(sdk: openai.OpenAI, client: JobsClient) -> None:
    question = _question()
    raw = sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=12, temperature=0
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == fake_completion_text(MODEL, question, 12)
    assert answer.choices[0].finish_reason == "length" and answer.usage is not None
    job = client.get(raw.headers["x-gpuq-job-id"])
    assert job["status"] == "succeeded" and answer.id == f"chatcmpl-{job['id']}"
    assert answer.usage.completion_tokens == job["result"]["eval_count"] == 12
    assert answer.usage.prompt_tokens == job["result"]["prompt_eval_count"] > 0


def test_chat_stream_arrives_as_chunks_then_usage(sdk: openai.OpenAI) -> None:
    question = _question()
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
        max_completion_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake_completion_text(MODEL, question, 20)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_text_completion_plain_and_streamed(sdk: openai.OpenAI) -> None:
    prompt = _question()
    plain = sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=8)
    assert plain.choices[0].text == fake_completion_text(MODEL, prompt, 8) and plain.object == "text_completion"
    streamed = "".join(
        c.choices[0].text for c in sdk.completions.create(model=MODEL, prompt=prompt, max_tokens=8, stream=True)
    )
    assert streamed == plain.choices[0].text


def test_errors_are_the_sdks_typed_exceptions(stack: DevStack, sdk: openai.OpenAI) -> None:
    message = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as unserved:
        sdk.chat.completions.create(model="llama3.1:8b", messages=message)  # type: ignore[arg-type]
    assert unserved.value.code == "model_not_found" and "llama3.2:1b" in unserved.value.message
    with pytest.raises(openai.BadRequestError) as two:
        sdk.chat.completions.create(model=MODEL, messages=message, n=2)  # type: ignore[arg-type]
    assert two.value.param == "n" and two.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as tools:
        sdk.chat.completions.create(
            model=MODEL,
            messages=message,  # type: ignore[arg-type]
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert tools.value.param == "tools"
    wrong = openai.OpenAI(base_url=stack.url + "/v1", api_key="gpuq_wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    limited = httpx.post(stack.url + "/v1/chat/completions", json={}, headers={"Authorization": "Bearer x"})
    assert limited.status_code == 401 and set(limited.json()["error"]) >= {"message", "type", "param", "code"}


def test_langchain_chat_openai_invokes_and_streams(stack: DevStack) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=stack.url + "/v1", api_key=stack.api_key, max_tokens=10, max_retries=0)
    question = _question()
    assert llm.invoke(question).content == fake_completion_text(MODEL, question, 10)
    streamed = "".join(str(part.content) for part in llm.stream(question))
    assert streamed == fake_completion_text(MODEL, question, 10)


def test_embeddings_through_the_sdk_in_both_encodings(sdk: openai.OpenAI) -> None:
    texts = ["the sky is blue", "the sea is too"]
    default = sdk.embeddings.create(model=MODEL, input=texts)  # the SDK asks for base64 and decodes it
    plain = sdk.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    expected = [fake_embedding(MODEL, t) for t in texts]
    for got in (default, plain):
        assert [d.index for d in got.data] == [0, 1] and got.usage.prompt_tokens > 0
        for vector, want in zip((d.embedding for d in got.data), expected, strict=True):
            assert len(vector) == len(want) and max(abs(a - b) for a, b in zip(vector, want, strict=True)) < 1e-6
    with pytest.raises(openai.BadRequestError) as sized:
        sdk.embeddings.create(model=MODEL, input="x", dimensions=8)
    assert sized.value.param == "dimensions"
