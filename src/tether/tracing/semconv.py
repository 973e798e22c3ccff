"""Attribute names for tether's spans: the OpenTelemetry GenAI conventions, plus ``tether.*``.

The ``gen_ai.*`` names follow the GenAI semantic conventions (status: Development), checked
against the ``opentelemetry-semantic-conventions`` package (0.66b2) by
``tests/tracing/test_semconv_package.py``: every name here is one of the package's constants
and none is one it says was replaced or removed. The package marks every ``gen_ai`` constant
"Deprecated: Moved to the OpenTelemetry GenAI semantic conventions repository" — the names
stay, only their home moves — so we define the strings here rather than import constants that
warn; ``session.id``, ``user.id``, ``error.type`` and ``server.*`` come from the general
conventions. Runs that call models are ``invoke_agent`` spans, other workflows
``invoke_workflow`` spans (both values of the package's ``gen_ai.operation.name`` enum).

Message content (``gen_ai.input.messages``, ``gen_ai.system_instructions``,
``gen_ai.tool.definitions``, ``gen_ai.output.messages``, tool arguments and results) is
*opt-in* in the conventions because it may hold personal data: tether records it only when a
sink is built with ``capture_content=True``. A chat span's input (messages, system
instructions, tool definitions) is exported only from calls whose request was journaled
(``ModelSettings.journal_input``): the journal keeps a digest of other requests, not the
request.

>>> GEN_AI_OPERATION_NAME, OP_EXECUTE_TOOL
('gen_ai.operation.name', 'execute_tool')
"""

from __future__ import annotations

__all__ = [
    "ERROR_TYPE",
    "EVENT_DECISION",
    "GEN_AI_AGENT_NAME",
    "GEN_AI_CONVERSATION_ID",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TOOL_CALL_ARGUMENTS",
    "GEN_AI_TOOL_CALL_ID",
    "GEN_AI_TOOL_CALL_RESULT",
    "GEN_AI_TOOL_DEFINITIONS",
    "GEN_AI_TOOL_DESCRIPTION",
    "GEN_AI_TOOL_NAME",
    "GEN_AI_TOOL_TYPE",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "GEN_AI_WORKFLOW_NAME",
    "OP_CHAT",
    "OP_EXECUTE_TOOL",
    "OP_INVOKE_AGENT",
    "OP_INVOKE_WORKFLOW",
    "OTHER",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "SESSION_ID",
    "SPAN_BACKOFF",
    "TETHER_ATTEMPT",
    "TETHER_COST_USD",
    "TETHER_DEADLINE",
    "TETHER_DECISION_ACTION",
    "TETHER_DECISION_NAME",
    "TETHER_DELAY_S",
    "TETHER_EFFECT",
    "TETHER_FAILURE_CLASS",
    "TETHER_FAILURE_DOMAIN",
    "TETHER_IDEMPOTENCY_KEY",
    "TETHER_LIMIT",
    "TETHER_NAME",
    "TETHER_POSITION",
    "TETHER_REASON",
    "TETHER_RECONCILED",
    "TETHER_REQUEST_DIGEST",
    "TETHER_RESOLVED_BY",
    "TETHER_RETRIES",
    "TETHER_RUN_CLOCK_END_S",
    "TETHER_RUN_CLOCK_START_S",
    "TETHER_RUN_ID",
    "TETHER_RUN_STATUS",
    "TETHER_WAKE_AT",
    "TOOL_TYPE_FUNCTION",
    "USER_ID",
]

# -- OpenTelemetry GenAI conventions ------------------------------------------------------------

#: What the span does: one of the ``OP_*`` values below.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
OP_INVOKE_AGENT = "invoke_agent"
OP_CHAT = "chat"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_WORKFLOW = "invoke_workflow"

GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
#: The provider's id of the response (``ModelResponse.id``).
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
#: A string array: one reason per generation (tether's responses have one).
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
#: Input tokens served from the provider's prompt cache (part of the input tokens).
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"

GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
#: The tool's description as the model was told it (bounded: see ``ModelCalled``).
GEN_AI_TOOL_DESCRIPTION = "gen_ai.tool.description"
#: ``function`` for tools the application itself executes, which is every tether tool.
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
TOOL_TYPE_FUNCTION = "function"

GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"

# Opt-in content attributes, recorded as JSON strings.
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
#: The system messages of a chat request, as a JSON list of message parts.
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
#: The tools a chat request offered, as a JSON list of ``{"type": "function", "name",
#: "description", "parameters"}`` objects.
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"

#: Stable general convention: a low-cardinality class of the error an operation ended with.
ERROR_TYPE = "error.type"
#: The conventions' fallback value of an enumerated attribute (``error.type``, the provider).
OTHER = "_OTHER"

#: Where a model call was sent: the host of the model's base URL, and its port.
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

#: The session a run belongs to (``RunStarted.session_id``).
SESSION_ID = "session.id"
#: On whose behalf a session's turn runs (its principal).
USER_ID = "user.id"

# -- tether's own -------------------------------------------------------------------------------

TETHER_RUN_ID = "tether.run.id"
#: ``completed``, ``failed``, ``escalated``, ``cancelled``, or ``waiting``/``running`` for a
#: span that covers only part of a run.
TETHER_RUN_STATUS = "tether.run.status"
#: The durable call's position in its run.
TETHER_POSITION = "tether.position"
#: A tool's effect class: ``read``, ``idempotent``, ``reconcilable``, ``unsafe``.
TETHER_EFFECT = "tether.tool.effect"
TETHER_IDEMPOTENCY_KEY = "tether.tool.idempotency_key"
#: True when a lookup found that an ambiguous write had happened.
TETHER_RECONCILED = "tether.tool.reconciled"
#: A failure's class in tether's taxonomy (``rate_limited``, ``permanent`` …).
TETHER_FAILURE_CLASS = "tether.failure.class"
#: Where a failure's corrective control belongs (``model``, ``infrastructure`` …).
TETHER_FAILURE_DOMAIN = "tether.failure.domain"
TETHER_COST_USD = "tether.cost_usd"
TETHER_RETRIES = "tether.retries"
TETHER_ATTEMPT = "tether.attempt"
TETHER_REQUEST_DIGEST = "tether.model.request_digest"

# Attributes of span events made from decisions, retries and other journal events.
EVENT_DECISION = "tether.decision"
TETHER_DECISION_NAME = "tether.decision.name"
TETHER_DECISION_ACTION = "tether.decision.action"
TETHER_DELAY_S = "tether.delay_s"
TETHER_LIMIT = "tether.limit"
TETHER_REASON = "tether.reason"
#: The name of a ``step`` or the key of a ``wait_for``.
TETHER_NAME = "tether.name"
TETHER_WAKE_AT = "tether.wake_at"
TETHER_DEADLINE = "tether.deadline"
TETHER_RESOLVED_BY = "tether.resolved_by"

#: A span's start and end on the run's own clock (epoch seconds), set when the export rebases
#: a run's times (``rebase_time=``): the virtual times the span was moved from.
TETHER_RUN_CLOCK_START_S = "tether.run_clock.start_s"
TETHER_RUN_CLOCK_END_S = "tether.run_clock.end_s"

#: The name of a span covering a retry's backoff wait: ``backoff {tool or model}``.
SPAN_BACKOFF = "backoff"
