"""How :mod:`tether.agent.mcp` reaches an MCP server: a connection per call (a URL, an
in-process server), or the caller's open session.

A connection opened per call lives in the calling task, as the SDK's task-scoped connections
require — which also lets an in-process server see which of the agent's tools is calling. What
ends such a call comes out of the connection's task groups wrapped in an exception group; it is
unwrapped here, so the runtime reads the failure itself (a simulated crash, a timeout).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from tether.errors import Crash, UsageError

if TYPE_CHECKING:
    from mcp_types import CallToolResult
    from mcp_types import Tool as MCPToolInfo

__all__ = ["Connection", "OpenSession", "PerCall", "client_class", "open_session", "per_call"]

_INSTALL = "pip install 'tether[mcp]'"


class Connection(Protocol):
    """How the toolset reaches a server: its tool listing, and one tool call."""

    async def list_tools(self) -> list[MCPToolInfo]: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult: ...



def client_class() -> Any:
    try:
        from mcp import Client
    except ImportError as exc:
        raise UsageError(f"MCP tools need the MCP SDK: {_INSTALL}") from exc
    return Client


class PerCall:
    """A new connection for every request, opened and closed in the calling task."""

    def __init__(self, source: Any) -> None:
        self.source = source

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Any]:
        try:
            async with client_class()(self.source, cache=None) as client:
                yield client.session
        except BaseExceptionGroup as group:
            # The connection's task groups wrap what ended the call; the runtime must read the
            # failure itself (a simulated crash, a timeout), not a group of it.
            leaves = list({id(leaf): leaf for leaf in _leaves(group)}.values())
            crash = next((leaf for leaf in leaves if isinstance(leaf, Crash)), None)
            if crash is not None:
                raise crash  # noqa: B904 - its own cause and context stay as they were
            if len(leaves) == 1:
                raise leaves[0]  # noqa: B904
            raise

    async def list_tools(self) -> list[MCPToolInfo]:
        async with self._open() as session:
            return await _listing(session)

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        async with self._open() as session:
            return await _send(session, name, arguments)


class OpenSession:
    """The caller's open session: every request goes through it."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def list_tools(self) -> list[MCPToolInfo]:
        return await _listing(self.session)

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        return await _send(self.session, name, arguments)


def per_call(source: Any) -> PerCall:
    client = client_class()
    from mcp import ClientSession, StdioServerParameters
    from mcp.server import Server
    from mcp.server.mcpserver import MCPServer

    if isinstance(source, client | ClientSession):
        raise UsageError("mcp_toolset: an open MCP session is used from async code: "
                         "tools = await mcp_toolset_async(session, ...)")
    if isinstance(source, StdioServerParameters):
        raise UsageError("mcp_toolset: a stdio server lives as long as its connection; open "
                         "it yourself (async with mcp.Client(params) as client:) and use "
                         "await mcp_toolset_async(client, ...)")
    if not isinstance(source, str | Server | MCPServer):
        raise UsageError(f"mcp_toolset: cannot reach an MCP server through "
                         f"{type(source).__name__}; give a streamable-HTTP URL, an in-process "
                         "MCPServer, or (with mcp_toolset_async) an open mcp.Client")
    return PerCall(source)


def open_session(source: Any) -> OpenSession | None:
    client = client_class()
    from mcp import ClientSession

    if isinstance(source, client):
        return OpenSession(source.session)
    if isinstance(source, ClientSession):
        return OpenSession(source)
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def _listing(session: Any) -> list[MCPToolInfo]:
    from mcp_types import PaginatedRequestParams

    tools: list[MCPToolInfo] = []
    cursor: str | None = None
    for _ in range(1000):  # a server whose pages never end cannot hang the agent's build
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
    raise UsageError("mcp_toolset: the server's tool listing did not end after 1000 pages")


async def _send(session: Any, name: str, arguments: dict[str, Any]) -> CallToolResult:
    # The request itself, not ClientSession.call_tool: that refuses a result breaking the
    # advertised output schema, which would lose a write's answer (it was applied); the tool's
    # declared result type judges it instead.
    from mcp.shared.exceptions import MCPError
    from mcp_types import HEADER_MISMATCH, CallToolRequest, CallToolRequestParams, CallToolResult

    request = CallToolRequest(params=CallToolRequestParams(name=name, arguments=arguments))
    try:
        result: CallToolResult = await session.send_request(request, CallToolResult)
    except MCPError as exc:
        if exc.code != HEADER_MISMATCH:
            raise
        # The server wants arguments mirrored as headers, which a session learns from the
        # tool listing (a fresh connection has none); it refused before running anything, so
        # list, then send once more.
        await _listing(session)
        result = await session.send_request(request, CallToolResult)
    return result
