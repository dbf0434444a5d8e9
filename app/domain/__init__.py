"""Domain layer: owns every Redis key and script; knows nothing of Flask's request."""
