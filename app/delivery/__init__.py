"""The webhook deliverer: a process of its own (`flask --app wsgi deliver`)."""
