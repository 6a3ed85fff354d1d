"""nodelogs-agent: ships a booting node's startup logs to the bucket, byte-exact, until its key expires.

The public surface is the command line (:mod:`agent.cli`, entered through :mod:`agent.entry`).
Modules, by what they do: :mod:`agent.config` (settings), :mod:`agent.keyfile` (the key file),
:mod:`agent.sources` (files and globs, generation by generation), :mod:`agent.identity` (pure
fingerprint arithmetic), :mod:`agent.rotation` (pure rotated-name ordering), :mod:`agent.siblings`
(a log's files in its directory, plain and gzip readers), :mod:`agent.discovery` (finding a
generation's file and the next one), :mod:`agent.journal` (journald spools), :mod:`agent.chunking`
(pure chunk arithmetic), :mod:`agent.redaction` (pure masking), :mod:`agent.staging` (cut, redact,
gzip, stage), :mod:`agent.checkpoint` (durable state), :mod:`agent.uploader` (keysvc grants, PUT,
retries), :mod:`agent.delivery` (intents to objects), :mod:`agent.runner` (the main loop).
It never imports google-cloud-storage or boto3.
"""

__all__: list[str] = []
