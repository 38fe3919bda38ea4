"""What an operator watches: the control plane's Prometheus metrics (:mod:`~shared.observability.metrics`),
the events every state change is announced in (:mod:`~shared.observability.events`, read back by
:mod:`~shared.observability.event_log`, fed to :mod:`~shared.observability.sinks`, delivered by
:mod:`~shared.observability.delivery`), and the log lines of every component (:mod:`~shared.observability.logs`)."""
