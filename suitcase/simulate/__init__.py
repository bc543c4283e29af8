"""``suitcase simulate``: a fleet of lightweight simulated agents against a real stack.

:mod:`.mqtt` (a minimal asyncio MQTT client), :mod:`.device` (one agent's wire behaviour),
:mod:`.enroll` (bulk import and claim polls), :mod:`.fleet` (worker processes), :mod:`.run`
(one simulation and its summary), :mod:`.stack` (a local broker, gateway and server),
:mod:`.limits` (the open-file limit), :mod:`.cli` (the command).
"""
