"""Where events go besides the store, one module per sink: :mod:`.log` (a log line, always), :mod:`.webhook`
(an account-level webhook, signed like job callbacks) and :mod:`.pubsub` (a Google Pub/Sub topic). The
network sinks are fed through tasks on the callback queue (:mod:`.task`), each delivery retried there."""
