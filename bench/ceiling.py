"""The bench ceiling: a bare Flask app doing one Redis PING per request.

Served by the same gunicorn config as the service, it is the most a Flask app on this
machine can do per request that touches Redis; the service's numbers are quoted as a
share of it, measured in the same run.
"""

import os

import redis
from flask import Flask, jsonify

app = Flask(__name__)
client = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.get("/")
def ping():
    return jsonify({"redis": client.ping()})
