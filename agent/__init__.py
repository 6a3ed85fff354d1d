"""nodelogs-agent: ships a booting node's startup logs to the bucket, byte-exact, until its key expires.

The public surface is the command line (:mod:`agent.cli`). Modules, by what they do:
:mod:`agent.config` (settings), :mod:`agent.keyfile` (the key file), :mod:`agent.sources` (files,
globs, journald), :mod:`agent.chunking` (pure chunk arithmetic), :mod:`agent.redaction` (pure
masking), :mod:`agent.checkpoint` (durable state), :mod:`agent.uploader` (keysvc grants, PUT,
retries), :mod:`agent.delivery` (intents to objects), :mod:`agent.runner` (the main loop).
It never imports google-cloud-storage or boto3.
"""

__all__: list[str] = []
