"""Everything that knows Slack: payload parsing, Block Kit rendering, the Web API. Nothing here knows SQL."""
