"""Language models behind one small contract (:class:`Model`), and the adapters.

``ScriptedModel`` and ``ReplayModel`` need nothing; ``OpenAIModel`` needs
``pip install 'tether[openai]'`` and ``AnthropicModel`` ``pip install 'tether[anthropic]'``
(their SDKs are imported only when a model is built).
"""

from tether.models.anthropic import AnthropicModel
from tether.models.base import (
    DeltaSink,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamingModel,
    TextSink,
    ToolCall,
    ToolSpec,
    Usage,
)
from tether.models.openai import OpenAIModel
from tether.models.pricing import DEFAULT_PRICES, Price, PriceTable
from tether.models.replay import ReplayModel
from tether.models.scripted import ScriptedModel, call, reply, sequence

__all__ = [
    "DEFAULT_PRICES",
    "AnthropicModel",
    "DeltaSink",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "OpenAIModel",
    "Price",
    "PriceTable",
    "ReplayModel",
    "ScriptedModel",
    "StreamingModel",
    "TextSink",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "call",
    "reply",
    "sequence",
]
