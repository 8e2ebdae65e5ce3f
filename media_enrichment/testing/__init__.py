"""Test and benchmark helpers that fake the network, not the library.

``bedrock_server.BedrockServer`` is a Bedrock-runtime-compatible HTTP server on loopback for
the real boto3 client (``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), with injectable faults.
"""

from media_enrichment.testing.bedrock_server import BedrockServer, Counters, FaultPlan, RequestRecord

__all__ = ["BedrockServer", "Counters", "FaultPlan", "RequestRecord"]
