"""Celery worker: app factory, queue discipline and thin tasks (the work lives in ``clearcut``)."""
