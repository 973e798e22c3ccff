"""Language models behind one small contract (:class:`Model`), and the adapters.

``ScriptedModel`` and ``ReplayModel`` need nothing; ``OpenAIModel`` needs
``pip install 'tether[openai]'`` and ``AnthropicModel`` ``pip install 'tether[anthropic]'``
(their SDKs are imported only when a model is built).
"""

from __future__ import annotations

from tether._lazy import attach as _attach

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real names for checkers and editors; imported on first use at run time
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

# Which module defines each public name; imported on first use (PEP 562), so importing one
# submodule of this package does not import its siblings.
_WHERE = {
    "AnthropicModel": "tether.models.anthropic",
    "DEFAULT_PRICES": "tether.models.pricing",
    "DeltaSink": "tether.models.base",
    "Message": "tether.models.base",
    "Model": "tether.models.base",
    "ModelRequest": "tether.models.base",
    "ModelResponse": "tether.models.base",
    "ModelSettings": "tether.models.base",
    "OpenAIModel": "tether.models.openai",
    "Price": "tether.models.pricing",
    "PriceTable": "tether.models.pricing",
    "ReplayModel": "tether.models.replay",
    "ScriptedModel": "tether.models.scripted",
    "StreamingModel": "tether.models.base",
    "TextSink": "tether.models.base",
    "ToolCall": "tether.models.base",
    "ToolSpec": "tether.models.base",
    "Usage": "tether.models.base",
    "call": "tether.models.scripted",
    "reply": "tether.models.scripted",
    "sequence": "tether.models.scripted",
}

if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)
