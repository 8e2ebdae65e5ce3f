"""Test and benchmark helpers that fake the network, not the library.

A Bedrock-compatible HTTP server on loopback for the real boto3 client
(``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``), with injectable faults. It imports nothing of the
library's providers, so it checks them rather than mirrors them. Its modules:

* ``bedrock_server``: ``BedrockServer`` (lifecycle, model rules, dispatch) and the command line
  (``python -m media_enrichment.testing.bedrock_server``);
* ``wire``: HTTP routes and how answers and errors are written; ``errors``: ``ServiceError``;
* ``faults``: ``FaultPlan``, the quota, ``Counters`` and ``RequestRecord``;
* ``models``: known model ids, profiles and ARNs;
* ``content``: deterministic image facts, vectors and metadata;
* ``claude`` (a package: ``rules``, ``request``, ``answer``, ``hostile``), ``titan``, ``nova``:
  each model's request validation and answers;
* ``control_plane``: ``GetFoundationModel`` and model lifecycles;
* ``batch`` (a package: ``control``, ``checks``, ``job``, ``lifecycle``, ``files``,
  ``answers``, ``plan``): batch inference jobs on the control plane, their files on S3.
"""

from typing import Any

from media_enrichment.testing.faults import Counters, FaultPlan, RequestRecord

__all__ = ["BedrockServer", "Counters", "FaultPlan", "RequestRecord"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that ``python -m media_enrichment.testing.bedrock_server`` runs the
    # module once, as the program, without runpy's "found in sys.modules" warning.
    if name == "BedrockServer":
        from media_enrichment.testing.bedrock_server import BedrockServer

        return BedrockServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
