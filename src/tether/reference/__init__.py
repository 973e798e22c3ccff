"""The agents tether ships: scripted models that behave as an LLM would, with their tools.

Each is an ordinary agent factory — ``agent(env) -> tether.Agent`` — loaded the way any user's
agent is (the short names ``refund`` and ``calendar`` are entry points of the ``tether.agents``
group). Their models are functions of the conversation, with ``sloppy`` and ``gullible`` knobs
drawn from seeded streams; their tools reach the world through the environment's clients; each
declares with ``env.expect`` what its task asks, for scenarios that state no ``success:``.
"""
