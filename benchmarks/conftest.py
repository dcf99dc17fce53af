"""Benchmarks run only under ``pytest --benchmark-only``; the plain test run skips them."""


def pytest_ignore_collect(collection_path, config):
    if not config.getoption("benchmark_only", default=False):
        return True
    return None
