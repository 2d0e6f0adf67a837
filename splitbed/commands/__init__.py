"""One module per `splitbed` sub-command; each exposes `register(app)`."""
