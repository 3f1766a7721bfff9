"""Worker side: model build, loading, inference and Celery tasks."""
