"""The Faust app, embedded broker, simulator and CLI: the composition root."""
