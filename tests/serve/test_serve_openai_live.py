"""The official ``openai`` client, unchanged, against a live server on 127.0.0.1 (started and stopped here)."""

from __future__ import annotations

import io

import pytest
import soundfile as sf
from serve_testlib import API_KEY, live_server

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def live_url(serve_model, tmp_path_factory):
    from valle2.serve import ServeConfig, create_app

    cfg = ServeConfig(data_dir=tmp_path_factory.mktemp("live"), api_keys=(API_KEY,), max_wait_ms=5.0)
    with live_server(create_app(cfg, model=serve_model)) as url:
        yield url


def test_openai_client_speech_create(live_url):
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=API_KEY, max_retries=0)
    audio = client.audio.speech.create(model="tts-1", voice="demo", input="Hello from the client.",
                                       response_format="wav")
    wav, sr = sf.read(io.BytesIO(audio.content))
    assert sr == 24000 and len(wav) > 0
    # The streaming form of the same call receives the audio in chunks.
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="demo", input="One. Two.", response_format="pcm", extra_body={"stream": True}) as r:
        data = b"".join(r.iter_bytes())
    assert len(data) > 0 and len(data) % 2 == 0


def test_openai_client_errors(live_url):
    bad_key = openai.OpenAI(base_url=f"{live_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.audio.speech.create(model="tts-1", voice="demo", input="Hi.")
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert "voice 'alloy' not found" in str(info.value)
