"""A Celery app for Flower: the broker and serializer settings of the workers, without their task code."""

from llm_shield.celery_config import make_celery

app = make_celery()
