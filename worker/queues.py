"""The Celery queues: their names, and which of them a CPU worker consumes."""
QUEUES = ("cpu", "gpu", "batch", "webhooks")
WORKER_QUEUES = "cpu,batch,webhooks"  # what a CPU worker consumes (dev, compose, Kubernetes)
DEFAULT_QUEUE = "cpu"
BATCH_QUEUE = "batch"
WEBHOOK_QUEUE = "webhooks"
