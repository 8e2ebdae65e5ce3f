"""The Bedrock runtime client's ``User-Agent``: built once (``aws.fixed_user_agent``) and sent
as botocore would build it, with the project's name, whatever the retry mode."""

from __future__ import annotations

import boto3
import botocore
import pytest
from botocore.awsrequest import AWSResponse

from media_enrichment.aws import USER_AGENT_EXTRA, bedrock_runtime_client, fixed_user_agent
from media_enrichment.config import Settings


def _sent_user_agent(client) -> str:
    """The header the client puts on the wire, caught at ``before-send`` (botocore's last step
    before the network; the answer is made up there, so nothing is sent)."""
    seen: list[str] = []

    def catch(request, **_):
        header = request.headers["User-Agent"]
        seen.append(header.decode() if isinstance(header, bytes) else header)
        return AWSResponse(request.url, 200, {"Content-Type": "application/json"}, _Raw(b'{"embedding": [], "inputTextTokenCount": 1}'))

    client.meta.events.register("before-send.bedrock-runtime.InvokeModel", catch)
    client.invoke_model(modelId="amazon.titan-embed-image-v1", body=b"{}", contentType="application/json", accept="application/json")
    return seen[0]


class _Raw:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_the_sent_user_agent_is_botocores_own_less_the_per_request_feature_ids(aws_env, mode):
    session = boto3.Session(region_name="us-east-1")
    ours = bedrock_runtime_client(session, settings=Settings(provider="bedrock", bedrock_retry_mode=mode))
    plain = session.client("bedrock-runtime", config=botocore.config.Config(retries={"mode": mode}, user_agent_extra=USER_AGENT_EXTRA))
    sent, standard = _sent_user_agent(ours), _sent_user_agent(plain)
    assert sent.startswith(f"Boto3/{boto3.__version__} md/Botocore#{botocore.__version__} ua/2.1 ")
    assert f"cfg/retry-mode#{mode}" in sent and sent.endswith(f" {USER_AGENT_EXTRA}")
    # botocore's own header has the same parts, plus the feature ids of this one request (m/...)
    assert [p for p in standard.split() if not p.startswith("m/")] == sent.split()
    assert sent.startswith(fixed_user_agent(mode))
