import time
from handled.auth import sessions
from tests.support.accounts import make_user, new_session


def test_timing(app):
    settings = app.config["HANDLED_SETTINGS"]
    user = make_user(app, role="salesperson")
    token = new_session(app, user)
    with app.app_context():
        assert sessions.authenticate(settings, token)
        best = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(2000):
                sessions.authenticate(settings, token)
            best.append((time.perf_counter() - started) / 2000 * 1e6)
    print(f"\nTIMING us per warm authenticate: min {min(best):.1f} all {[round(b, 1) for b in best]}")
