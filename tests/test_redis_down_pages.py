"""Pages that need the job queue, with Redis not answering: a 503 page naming Redis, never a 500.

bench/faults.py (redis-empty, redis-kept) saw /jobs/ and /transformations/ answer 500 with a
redis ConnectionError traceback while Redis was down.
"""

import dataclasses

import pytest

from handled import create_app
from tests.support.accounts import make_user, sign_in_client
from tests.support.servers import PrivateRedis


@pytest.mark.flow("Redis down")
def test_job_pages_say_redis_is_down_with_a_503(settings, tmp_path):
    private = PrivateRedis(tmp_path / "redis").start()
    try:
        application = create_app(dataclasses.replace(settings, redis_url=private.url))
        application.config.update(TESTING=True)
        client = sign_in_client(application, make_user(application, ["run_transformations", "run_imports"]))
        assert client.get("/jobs/").status_code == 200
        private.stop()
        for path in ("/jobs/", "/transformations/"):
            response = client.get(path)
            page = response.get_data(as_text=True)
            assert response.status_code == 503, (path, response.status_code)
            assert "The job queue (Redis) is not answering" in page, page[:500]
        response = client.post("/transformations/zip3-reference/run")
        assert response.status_code == 503
    finally:
        private.stop()
