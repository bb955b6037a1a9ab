"""On-call services (PagerDuty, Opsgenie): who is on call, open incidents, paging. The port is in ``base``."""
