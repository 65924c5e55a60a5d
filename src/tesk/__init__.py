"""tesk: a GA4GH Task Execution Service that runs tasks as Kubernetes Jobs or on this host."""

__version__ = "0.1.0"
