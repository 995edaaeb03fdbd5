"""A real Celery worker process answers through a real broker."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(180)


def test_ping_task_round_trip(celery_worker):
    result = celery_worker.send_task("clearcut.ping")
    info = result.get(timeout=30)
    assert info["queues"] == ["cpu"]
    assert isinstance(info["pid"], int)
    assert "models" in info and "provider" in info


def test_worker_info_control_command(celery_worker):
    replies = celery_worker.control.broadcast("clearcut_info", reply=True, timeout=2)
    by_name = {name: reply for answer in replies for name, reply in answer.items()}
    info = by_name[celery_worker.conf.clearcut_worker_name]
    assert info["queues"] == ["cpu"]
    assert isinstance(info["models"], list)


def test_queue_discipline(celery_worker):
    conf = celery_worker.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert {q.name for q in conf.task_queues} == {"cpu", "gpu", "batch", "webhooks"}
    assert conf.task_default_queue == "cpu"
